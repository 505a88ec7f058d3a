"""Every failure is a FhirError; one table maps its kind to an HTTP status and an issue code.

OperationOutcome issue codes: https://hl7.org/fhir/R4/valueset-issue-type.html; statuses:
https://hl7.org/fhir/R4/http.html#summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    message: str
    code: str = ""  # empty: the error kind's default issue code
    expression: tuple[str, ...] = ()
    severity: str = "error"


@dataclass
class FhirError(Exception):
    """Base of all errors that become an OperationOutcome. Subclasses fix status and issue code."""

    message: str
    expression: tuple[str, ...] | str = ()
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if isinstance(self.expression, str):
            self.expression = (self.expression,)
        if not self.issues:
            self.issues = [Issue(self.message, self.code, tuple(self.expression))]

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource describing this error."""
        return operation_outcome(self.issues, default_code=self.code)


def operation_outcome(issues: list[Issue], default_code: str = "informational") -> dict[str, Any]:
    """Build an OperationOutcome from issues (https://hl7.org/fhir/R4/operationoutcome.html)."""
    out = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code or default_code,
            "diagnostics": issue.message,
        }
        if issue.expression:
            entry["expression"] = list(issue.expression)
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}


class Invalid(FhirError):
    status, code = 400, "invalid"


class Unprocessable(FhirError):
    status, code = 422, "processing"


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class TooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class NotImplementedYet(FhirError):
    status, code = 501, "not-supported"


class ServerError(FhirError):
    status, code = 500, "exception"
