"""Transaction Bundles of conditional creates, split into self-contained batches (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

# Namespace for the deterministic urn:uuid fullUrls: the same identifier gives the same fullUrl in
# every batch and every run, so a re-ingest produces byte-identical entries.
FULL_URL_NAMESPACE = uuid.UUID("6f0b5a52-6c1e-5d8e-9c39-1b0d5f3e7a21")
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``Bundle.entry``: a resource, its urn:uuid fullUrl and the request that writes it.

    With ``if_none_exist`` the entry is a conditional create (``POST`` + ``ifNoneExist``).
    """

    full_url: str
    resource: dict[str, Any]
    if_none_exist: str | None = None
    method: str = "POST"
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        request: dict[str, Any] = {"method": self.method, "url": self.url or self.resource["resourceType"]}
        if self.if_none_exist is not None:
            request["ifNoneExist"] = self.if_none_exist
        return {"fullUrl": self.full_url, "resource": self.resource, "request": request}


_NAMESPACE_BYTES = FULL_URL_NAMESPACE.bytes


# The UUID variant bits (RFC 4122: 10xx) set in the high nibble of byte 8, by that hex digit.
_VARIANT = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}


def full_url_for(system: str, value: str) -> str:
    """The deterministic ``urn:uuid:`` fullUrl for an identifier ``system|value`` (an RFC 4122 UUID v5)."""
    # Same result as str(uuid.uuid5(FULL_URL_NAMESPACE, ...)), without building UUID objects (hot path):
    # the SHA-1's first 16 bytes in hex, version nibble 5 (hex digit 12), variant bits in digit 16.
    h = hashlib.sha1(_NAMESPACE_BYTES + f"{system}|{value}".encode()).hexdigest()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def conditional_create(
    resource: dict[str, Any], system: str, value: str, *, search: str = "identifier"
) -> Entry:
    """A conditional create of ``resource``: ``ifNoneExist: <search>=<system>|<value>``.

    ``search`` is the search parameter that finds it (``identifier``, or ``_tag`` for resources
    without ``identifier`` such as Provenance).
    """
    return Entry(full_url_for(system, value), resource, if_none_exist=f"{search}={system}|{value}")


def transaction(entries: Iterable[Entry]) -> dict[str, Any]:
    """A ``transaction`` Bundle of the entries, in order."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [e.as_dict() for e in entries]}


class ProvenanceFactory(Protocol):
    """Makes the Provenance entry closing a batch (see :class:`ingest.provenance.ProvenanceSpec`)."""

    def __call__(self, targets: Sequence[Entry], supporting: Sequence[Entry]) -> Entry: ...


class BatchWriter:
    """Collects entries into transaction Bundles of at most ``batch_size`` entries each.

    Every batch is self-contained: the ``requires`` entries of an added entry (its Device, say)
    are repeated in each batch that needs them, ahead of it, and, with a ``provenance`` factory,
    each batch ends with a Provenance targeting that batch's primary entries. An entry whose
    fullUrl is already in the current batch is a duplicate and is not added again.
    Completed bundles wait in the writer until :meth:`drain` or :meth:`close` hands them out, so a
    caller can stream without holding a whole run in memory.
    """

    def __init__(
        self, batch_size: int = DEFAULT_BATCH_SIZE, provenance: ProvenanceFactory | None = None
    ) -> None:
        if batch_size < 3:
            raise ValueError("batch_size must be at least 3 (a supporting entry, an entry, a Provenance)")
        self.batch_size = batch_size
        self.provenance = provenance
        self._primary: list[Entry] = []
        self._supporting: list[Entry] = []
        self._urls: set[str] = set()
        self._ready: list[dict[str, Any]] = []
        self.bundles_written = 0
        self.entries_written = 0

    def __len__(self) -> int:
        return len(self._primary) + len(self._supporting)

    def add(self, entry: Entry, requires: Sequence[Entry] = ()) -> bool:
        """Add an entry (and what it requires); False when it duplicates one already in the batch."""
        if entry.full_url in self._urls:
            return False
        reserve = 1 if self.provenance is not None else 0
        missing = [r for r in requires if r.full_url not in self._urls]
        if len(self) + len(missing) + 1 + reserve > self.batch_size and self._primary:
            self.flush()
            missing = list(requires)
        if len(missing) + 1 + reserve > self.batch_size:
            raise ValueError("an entry and what it requires do not fit in one batch")
        for r in missing:
            if r.full_url not in self._urls:
                self._supporting.append(r)
                self._urls.add(r.full_url)
        self._primary.append(entry)
        self._urls.add(entry.full_url)
        return True

    def flush(self) -> None:
        """Close the current batch (if it has primary entries) into a Bundle."""
        if not self._primary:
            return
        # Supporting entries are shared between batches by their producers: copy them so that a
        # consumer editing one bundle in place (say, assigning ids) cannot change another.
        supporting = [replace(e, resource=copy.deepcopy(e.resource)) for e in self._supporting]
        entries = [*supporting, *self._primary]
        if self.provenance is not None:
            entries.append(self.provenance(self._primary, self._supporting))
        self._ready.append(transaction(entries))
        self.bundles_written += 1
        self.entries_written += len(entries)
        self._primary, self._supporting, self._urls = [], [], set()

    @property
    def has_ready(self) -> bool:
        """True when completed bundles are waiting to be drained."""
        return bool(self._ready)

    def drain(self) -> list[dict[str, Any]]:
        """The bundles completed since the last drain."""
        ready, self._ready = self._ready, []
        return ready

    def close(self) -> list[dict[str, Any]]:
        """Flush the last batch and drain."""
        self.flush()
        return self.drain()
