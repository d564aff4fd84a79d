"""OperationOutcome bodies for the service's error responses (CDS Hooks 3.0 style)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


def operation_outcome(status: int, code: str, diagnostics: str) -> JSONResponse:
    """An error response whose body is an OperationOutcome saying what was wrong."""
    body: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)
