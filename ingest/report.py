"""Ingest problem report and result (FHIR OperationOutcome-like issues: https://hl7.org/fhir/R4/operationoutcome.html)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input: which file, where in it, what, how bad.

    ``location`` is a 1-based line number (text formats) or an element path such as
    ``HealthData/Record[12]`` or ``$[3].data.samples[0]`` (XML/JSON formats); ``""`` when the
    problem concerns the whole file.
    """

    file: str
    location: int | str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"line {self.location}" if isinstance(self.location, int) else self.location
        prefix = f"{self.file}:{where}" if where else self.file
        return f"{prefix}: {self.severity}: {self.message}"

    def as_issue(self) -> dict[str, Any]:
        """This problem as an ``OperationOutcome.issue`` dict."""
        where = f"line {self.location}" if isinstance(self.location, int) else self.location
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": "invalid" if self.severity in ("error", "fatal") else "informational",
            "diagnostics": self.message,
        }
        loc = f"{self.file}:{where}" if where else self.file
        if loc:
            issue["location"] = [loc]
        return issue


@dataclass
class IngestResult:
    """What an ingest run produced: transaction Bundles (plain dicts), problems, and counters.

    Counter keys used by the adapters: ``records`` (source records read), ``observations``
    (Observation entries written), ``devices``, ``bundles``, ``duplicates`` (same identifier twice
    in one batch), ``rejected`` (records that produced a Problem), ``skipped`` (records of a type
    the adapter does not map) and ``skipped:<type>`` per unmapped source type.
    """

    bundles: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """True when no problem is an error or fatal."""
        return not any(p.severity in ("error", "fatal") for p in self.problems)

    @property
    def resources(self) -> list[dict[str, Any]]:
        """Every resource of every bundle, in order."""
        return [e["resource"] for b in self.bundles for e in b.get("entry", [])]

    def resources_of(self, resource_type: str) -> list[dict[str, Any]]:
        """Every resource of the given type, in order (duplicated Devices/Provenance per batch included)."""
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def outcome(self) -> dict[str, Any]:
        """The problems as a FHIR OperationOutcome (an 'information' issue when there are none)."""
        issues = [p.as_issue() for p in self.problems] or [
            {"severity": "information", "code": "informational", "diagnostics": "no problems"}
        ]
        return {"resourceType": "OperationOutcome", "issue": issues}

    def merge(self, other: IngestResult) -> None:
        """Append another result's bundles, problems and counts to this one."""
        self.bundles.extend(other.bundles)
        self.problems.extend(other.problems)
        self.counts.update(other.counts)
