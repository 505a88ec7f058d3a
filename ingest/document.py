"""An ingested original file as a FHIR DocumentReference with the bytes attached, and its transaction Bundle (https://hl7.org/fhir/R4/documentreference.html).

Core of the document adapters (``lab-report``, ``dicom``): both keep the source file itself next to
what they read from it, and both close their single bundle with the batch Provenance of
:mod:`ingest.provenance`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.bundle import Entry, conditional_create, transaction
from ingest.provenance import ProvenanceSpec, now_instant

DOCUMENT_SYSTEM = "urn:fhir-server:ingest:document"


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of the bytes as hex: the default identifier value of an ingested document."""
    return hashlib.sha256(data).hexdigest()


def attachment(data: bytes, content_type: str, title: str) -> dict[str, Any]:
    """An Attachment carrying the bytes (base64), their size and SHA-1 hash (R4 Attachment.hash is SHA-1)."""
    return {
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # SHA-1: what R4 mandates
        "title": title,
    }


def document_reference(
    data: bytes,
    *,
    content_type: str,
    title: str,
    patient_ref: str,
    type_concept: dict[str, Any],
    identifier: tuple[str, str] | None = None,
    description: str | None = None,
    category: dict[str, Any] | None = None,
) -> Entry:
    """The original file as a conditional-create DocumentReference.

    ``identifier`` is ``(system, value)``; by default the file's SHA-256 in :data:`DOCUMENT_SYSTEM`,
    so the same bytes always give the same DocumentReference.
    """
    system, value = identifier or (DOCUMENT_SYSTEM, sha256_hex(data))
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [{"system": system, "value": value}],
        "status": "current",
        "type": type_concept,
    }
    if category is not None:
        resource["category"] = [category]
    resource["subject"] = {"reference": patient_ref}
    if description:
        resource["description"] = description
    resource["content"] = [{"attachment": attachment(data, content_type, title)}]
    return conditional_create(resource, system, value)


def bundle(
    entries: Sequence[Entry], *, source: str, file: str, recorded: str | None = None
) -> dict[str, Any]:
    """One transaction Bundle of the entries, closed by the run's Provenance targeting them all."""
    spec = ProvenanceSpec(source=source, file=file, recorded=recorded or now_instant())
    return transaction([*entries, spec(list(entries), [])])


BytesIngest = Callable[[bytes, Any, str], list[dict[str, Any]]]


class FileAdapter:
    """A document adapter (whole Bundles, not Samples) built on a function of the file's bytes."""

    def __init__(self, name: str, ingest_bytes: BytesIngest) -> None:
        self.name = name
        self._ingest_bytes = ingest_bytes

    def ingest(self, path: Path, ctx: Any, patient_ref: str) -> list[dict[str, Any]]:
        """One file -> its transaction Bundle(s); problems and counts go to ``ctx``. Never raises for bad input."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            ctx.problem("", f"cannot read file: {exc}", "fatal")
            return []
        return self._ingest_bytes(data, ctx, patient_ref)

    def run(
        self, path: str | Path, patient_ref: str, *, options: dict[str, Any] | None = None, ctx: Any = None
    ) -> Any:
        """Ingest one file: Bundles, problems and counts as an :class:`ingest.report.IngestResult`."""
        from ingest.pipeline import ReadContext
        from ingest.report import IngestResult

        p = Path(path)
        context = ctx or ReadContext(file=p.name, options=dict(options or {}))
        bundles = self.ingest(p, context, patient_ref)
        return IngestResult(bundles=bundles, problems=context.problems, counts=context.counts)
