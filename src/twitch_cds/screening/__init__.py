"""Population screening: a whole FHIR Bulk Data export through the rules, one patient at a
time, to a worklist (``screen``) or as a stream of results (``evaluate_many``)."""

from twitch_cds.screening.evaluate_many import PatientResult, evaluate_many
from twitch_cds.screening.gate import CardGate
from twitch_cds.screening.job import ScreenSummary, screen
from twitch_cds.screening.resume import ResumeError

__all__ = ["CardGate", "PatientResult", "ResumeError", "ScreenSummary", "evaluate_many", "screen"]
