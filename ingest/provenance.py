"""One Provenance per ingest batch, targeting what the batch wrote (https://hl7.org/fhir/R4/provenance.html)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.bundle import Entry, conditional_create

# R4 Provenance has no identifier: the run is found again by a meta.tag in this system.
PROVENANCE_TAG_SYSTEM = "urn:fhir-server:ingest:provenance"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def now_instant() -> str:
    """The current time as a FHIR instant (UTC, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ProvenanceSpec:
    """Who/what/when of an ingest run; called by the batch writer to close each batch.

    The Provenance is a conditional create on ``_tag`` whose code hashes the source and the
    batch's target fullUrls, so ingesting the same data again creates nothing new.
    """

    source: str
    file: str = ""
    recorded: str = field(default_factory=now_instant)
    agent_display: str = "fhir-server ingest"

    def __call__(self, targets: Sequence[Entry], supporting: Sequence[Entry]) -> Entry:
        digest = hashlib.sha256()
        digest.update(self.source.encode())
        for t in targets:
            digest.update(b"\x1f" + t.full_url.encode())
        tag = digest.hexdigest()[:32]
        agents: list[dict[str, Any]] = [
            {
                "type": _concept(_PARTICIPANT, "assembler", "Assembler"),
                "who": {"display": f"{self.agent_display} ({self.source})"},
            }
        ]
        agents += [
            {"type": _concept(_PARTICIPANT, "device", "Device"), "who": {"reference": s.full_url}}
            for s in supporting
            if s.resource.get("resourceType") == "Device"
        ]
        resource: dict[str, Any] = {
            "resourceType": "Provenance",
            "meta": {"tag": [{"system": PROVENANCE_TAG_SYSTEM, "code": tag}]},
            "target": [{"reference": t.full_url} for t in targets],
            "recorded": self.recorded,
            "activity": _concept(_DATA_OPERATION, "CREATE", "create"),
            "agent": agents,
        }
        if self.file:
            resource["entity"] = [{"role": "source", "what": {"display": self.file}}]
        return conditional_create(resource, PROVENANCE_TAG_SYSTEM, tag, search="_tag")


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}
