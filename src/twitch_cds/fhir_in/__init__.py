"""FHIR in: reading what integrators send, and turning trustworthy data into facts."""
