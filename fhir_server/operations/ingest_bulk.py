"""`fhir-server ingest` and `$ingest` on the bulk write path: a file's conditional creates resolved and written a chunk at a time (https://hl7.org/fhir/R4/http.html#ccreate).

The sample adapters (Apple Health, Health Connect, Fitbit, Open mHealth, CSV) yield Observations,
each a conditional create on its sample identifier (`identifier=<system>|<hash>`), and the Devices
that recorded them. Here they are written without transaction Bundles, `chunk_size` records per
database transaction, with the meaning each has as a conditional create on its own
(https://hl7.org/fhir/R4/http.html#ccreate):

- the identifier matches one resource: nothing is written, the record is already present;
- it matches none: the resource is validated (`fhir_server/validation.validate`) and created;
- it matches several: the record is a problem of the report, and nothing is written for it.

How, per chunk: the records are deduplicated in memory (the same identifier twice in one chunk is
one resource); the conditional lock keys of every identifier are taken in ONE sorted statement
(`Store.lock_all`, as transactions do), so two ingests of the same file queue instead of creating
twice; then one indexed lookup per resource type finds what exists (`search/token_batch.py`, within
the requester's grants); what is new goes through `Tx.create` and the flush's `Tx.write_batch` (COPY
on PostgreSQL), the one write path, which stores each version's change event (source
`ingest:<job id>` or `ingest:command`), exactly as for a single conditional create. Each Device is
resolved once per run, as a conditional create in a transaction of its own before the first chunk
that names it (the run remembers its id), and each chunk that creates records closes with
one Provenance targeting the chunk's records, itself a conditional create on a tag hashing them
(`ingest.provenance`): resending a file creates nothing at all, and finds the same Provenances.
(One Provenance per chunk rather than per run: R4 `Provenance.target` lists every resource, and one
resource naming a million others could be neither validated nor served sensibly.)

The requester's grants (recorded with an `$ingest` job; None for the operator's command) are
enforced on the records as for a REST create: records about a patient other than the one a confined
requester may write for are problems, every Observation created is checked against the grants in
the same transaction (`enforce.check_written_together`), and their lookups see only what the grants
let the requester search. The run's Devices and Provenance belong to no patient compartment: they
describe the ingest and are written by the server, as the job's Task is (and as before, when the
whole job ran as the server).
Records found already present are not validated again: nothing of them is written.

Pipelined (PostgreSQL, `FHIR_INGEST_PIPELINE`, 2 by default; 1 writes a chunk at a time): two chunks
are in flight at once, each in its own transaction on its own connection, so one chunk's Python work
(lookup, validation, index rows) runs while the database writes the other. Only one chunk WRITES at a
time (`_Turn`: from its COPY to its commit): two chunks copying into the same indexes at once cost
the client and the database a fifth more CPU each and gained nothing. About 10-20% more records/s
than one chunk at a time, for about 20 MiB more peak memory (bench/README.md "Idempotent writes").
The meaning is unchanged because the chunks serialise where it matters: a record's lock key is held
until its transaction commits, so a record in both chunks waits for the first and then finds it (as
two ingests of one file do); outcomes are applied in chunk order and a resumed job restarts after
the last chunk applied. SQLite (one writer) writes a chunk at a time.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ingest.bundle import Entry
from ingest.pipeline import IngestRun
from ingest.report import Problem

from ..auth import enforce
from ..auth.principal import Access
from ..errors import FhirError
from ..interactions.conditional import lock_key
from ..interactions.context import Context
from ..interactions.search import parse
from ..interactions.write import checked_body
from ..search import token_batch
from ..search.types.token import TokenValue, parse_token
from ..store import bulk_write
from ..store.sql import Tx, new_id
from ..warmup import chunked_collection
from .ingest import Tally, refusal, write_bundles

CHUNK = 2000  # records per database transaction (bench/README.md "Sixteenth session": +10% over 1,000)
_LOOKUP = 5000  # identifier codes per lookup statement


@dataclass(frozen=True, slots=True)
class _Record:
    entry: Entry
    device: Entry | None
    location: int | str


@dataclass
class _Outcome:
    """What one chunk did; applied to the tally once its transaction committed."""

    created: int = 0
    existing: int = 0
    entries: int = 0
    problems: list[tuple[int | str, str]] = field(default_factory=list)


@dataclass
class _Flight:
    """A chunk on its way: its transaction's future (None: nothing to write), or why it was refused."""

    n: int
    size: int
    outcome: _Outcome  # the problems found before its transaction
    future: Future[_Outcome] | None = None
    refused: FhirError | None = None


class _Turn:
    """A chunk's turn to write: taken before its COPY, kept until its transaction ended (the lock is
    taken once however often `Store.transact` runs the chunk again)."""

    __slots__ = ("held", "lock")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock, self.held = lock, False

    def take(self) -> None:
        if not self.held:
            self.lock.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


@dataclass(frozen=True)
class _Parameter:
    """The token search parameter a type's conditional creates use (e.g. Observation `identifier`)."""

    code: str
    ids: tuple[int, ...]


class BulkIngest:
    """Writes one run's records chunk by chunk; see the module docstring."""

    def __init__(
        self,
        ctx: Context,
        run: IngestRun,
        tally: Tally,
        *,
        grants: Mapping[str, Access] | None = None,
        chunk_size: int = CHUNK,
    ) -> None:
        self.ctx, self.run, self.tally = ctx, run, tally
        self.grants = dict(grants) if grants is not None else None
        self.chunk_size = chunk_size
        self.devices: dict[str, str] = {}  # Device fullUrl -> Device/id, for the whole run
        self.patients: dict[str, bool] = {}  # Patient reference -> exists and may be written for
        self._parameters: dict[tuple[str, str], _Parameter] = {}
        self._writing = threading.Lock()  # held by the chunk writing (see `_Turn`)
        # A requester confined to patient compartments writes records only about those patients.
        records = self.grants.get("Observation") if self.grants is not None else None
        self.confined = (records.compartments or None) if records is not None else None

    # ------------------------------------------------------------ the run
    def write(self, on_chunk: Callable[[Tally], None] | None = None) -> Tally:
        """Write every chunk of the run (skipping the chunks a resumed job's tally has seen).

        On PostgreSQL `Settings.ingest_pipeline` chunks (default 2) are in flight at once, each in its
        own transaction on its own connection: while one waits for its COPY and commit, the next is
        resolved, validated and indexed (see the module docstring, "Pipelined"). Outcomes are applied, and `on_chunk` called,
        in chunk order."""
        depth = 1 if self.ctx.store.sqlite else max(1, self.ctx.settings.ingest_pipeline)
        switching = _quick_switching() if depth > 1 else nullcontext()
        with (
            chunked_collection() as between_chunks,
            switching,
            ThreadPoolExecutor(depth, thread_name_prefix="ingest-chunk") as pool,
        ):
            flight: deque[_Flight] = deque()
            try:
                n = 0  # not enumerate(): it keeps its last (n, chunk) tuple for reuse
                for chunk in self._chunks():
                    n += 1
                    if n <= self.tally.seen:
                        continue
                    flight.append(self._start(pool, n, chunk, inline=depth == 1))
                    del chunk  # garbage once its flight is finished (see `chunked_collection`)
                    while len(flight) >= depth:
                        self._finish(flight.popleft(), on_chunk)
                        between_chunks()
                while flight:
                    self._finish(flight.popleft(), on_chunk)
            finally:  # an error (or a lost lease) stops the run: let what is in flight end first
                futures.wait([f.future for f in flight if f.future is not None])
            bulk_write.sync(self.ctx.store)
        return self.tally

    def _chunks(self) -> Iterator[list[_Record]]:
        """The records, `chunk_size` distinct identifiers at a time (a repeat within a chunk is a
        duplicate, counted and dropped: it would resolve to the same resource)."""
        counts = self.run.counts
        chunk: list[_Record] = []
        seen: set[str] = set()
        for entry, device, location in self.run.records():
            if entry.full_url in seen:
                counts["duplicates"] += 1
                continue
            seen.add(entry.full_url)
            counts["observations"] += 1
            chunk.append(_Record(entry, device, location))
            if len(chunk) >= self.chunk_size:
                ready, chunk, seen = [chunk], [], set()
                yield ready.pop()  # not kept by this suspended frame: garbage once written
        if chunk:
            yield chunk

    def _start(self, pool: ThreadPoolExecutor, n: int, chunk: list[_Record], *, inline: bool) -> _Flight:
        """Check chunk `n`'s patients, resolve its new Devices, and start its transaction (in `pool`,
        or here and now when `inline`)."""
        outcome = _Outcome()
        writable = self._about_writable_patients(chunk, outcome)
        flight = _Flight(n, len(chunk), outcome)
        if not writable:
            return flight
        try:
            self._resolve_devices(writable)
        except FhirError as exc:
            flight.refused = exc
            return flight

        def work() -> _Outcome:
            turn = _Turn(self._writing)
            try:
                return self.ctx.store.transact(
                    lambda tx: self._perform(tx, writable, _Outcome(problems=list(outcome.problems)), turn),
                    self.ctx.write_context("ingest:command"),
                )
            finally:
                turn.release()

        if inline:
            done: Future[_Outcome] = Future()
            try:
                done.set_result(work())
            except FhirError as exc:
                done.set_exception(exc)
            flight.future = done
        else:
            flight.future = pool.submit(work)
        return flight

    def _finish(self, flight: _Flight, on_chunk: Callable[[Tally], None] | None) -> None:
        """Wait for a chunk's transaction and apply its outcome to the tally (in chunk order)."""
        tally, outcome = self.tally, flight.outcome
        refused = flight.refused
        if refused is None and flight.future is not None:
            try:
                outcome = flight.future.result()
            except FhirError as exc:
                refused = exc
        if refused is not None:
            self._problems(flight.outcome)  # found before the transaction
            tally.failed_bundles += 1
            tally.refused.append(
                Problem(
                    tally.file,
                    f"chunk {flight.n}",
                    f"the server refused these {flight.size} records, so none of them was stored: "
                    + refusal(refused),
                )
            )
        else:
            if flight.future is not None:
                tally.bundles += 1
            tally.entries += outcome.entries
            tally.created += outcome.created
            tally.existing += outcome.existing
            self._problems(outcome)
        tally.seen = flight.n
        if on_chunk is not None:
            on_chunk(tally)

    def _resolve_devices(self, chunk: list[_Record]) -> None:
        """The chunk's Devices not yet resolved in this run, each a conditional create, in their own
        transaction before the chunk's (so chunks in flight together never wait for each other's
        Device); counted in the tally at once."""
        new = list(
            {
                r.device.full_url: r.device
                for r in chunk
                if r.device is not None and r.device.full_url not in self.devices
            }.values()
        )
        if not new:
            return

        def work(tx: Tx) -> tuple[dict[str, str], _Outcome]:
            out = _Outcome()
            self.ctx.store.lock_all(tx, [_lock_key(d) for d in new])
            ids: dict[str, str] = {}
            for device, found in zip(new, self._matches(tx, "Device", new), strict=True):
                if len(found) > 1:
                    raise _several(device)
                out.entries += 1
                if found:
                    ids[device.full_url] = f"Device/{found[0]}"
                    out.existing += 1
                    continue
                rid = new_id()
                tx.create(checked_body(dict(device.resource), "Device", settings=self.ctx.settings), rid)
                ids[device.full_url] = f"Device/{rid}"
                out.created += 1
            return ids, out

        ids, out = self.ctx.store.transact(work, self.ctx.write_context("ingest:command"))
        self.devices.update(ids)
        self.tally.entries += out.entries
        self.tally.created += out.created
        self.tally.existing += out.existing

    def _problems(self, outcome: _Outcome) -> None:
        for location, message in outcome.problems:
            self.run.counts["rejected"] += 1
            self.tally.refused.append(Problem(self.tally.file, location, message))

    # ------------------------------------------------------------ one chunk
    def _about_writable_patients(self, chunk: list[_Record], outcome: _Outcome) -> list[_Record]:
        """The records about a patient that exists and that the requester may write for; the others
        are problems (checked once per patient and run, before the write transaction)."""
        unknown = sorted({_subject(r.entry) for r in chunk} - self.patients.keys())
        if unknown:
            with self.ctx.store.read() as tx:
                for ref in unknown:
                    rtype, _, rid = ref.partition("/")
                    stored = tx.current(rtype, rid) if rtype == "Patient" and rid else None
                    self.patients[ref] = stored is not None and not stored.deleted
        kept: list[_Record] = []
        for record in chunk:
            ref = _subject(record.entry)
            if self.confined is not None and ref not in self.confined:
                outcome.problems.append(
                    (record.location, f"{ref} is outside the patient compartment this ingest may write to")
                )
            elif not self.patients[ref]:
                outcome.problems.append((record.location, f"{ref} does not exist on this server"))
            else:
                kept.append(record)
        return kept

    def _perform(self, tx: Tx, chunk: list[_Record], out: _Outcome, turn: _Turn) -> _Outcome:
        """Resolve and write one chunk in `tx`: run again from scratch on contention (Store.transact),
        so it changes nothing outside `tx` and `out`. Its writes (COPY, checks, commit) wait for
        `turn`: one chunk writes at a time while the next one is resolved, validated and indexed."""
        bulk_write.commit_asynchronously(tx)
        self.ctx.store.lock_all(tx, [_lock_key(r.entry) for r in chunk])
        device_ids = {
            r.device.full_url: self.devices[r.device.full_url] for r in chunk if r.device is not None
        }
        creates: list[tuple[dict[str, Any], str]] = []
        targets: list[Entry] = []
        used: dict[str, Entry] = {}  # the Devices of the targets, for the Provenance's agents
        ids: dict[str, str] = {}  # record fullUrl -> Observation/id
        entries = [r.entry for r in chunk]
        for record, found in zip(chunk, self._matches(tx, "Observation", entries), strict=True):
            entry = record.entry
            if len(found) > 1:
                out.problems.append((record.location, _several(entry).message))
                continue
            if found:
                ids[entry.full_url] = f"Observation/{found[0]}"
                out.existing += 1
                out.entries += 1
                targets.append(entry)
                if record.device is not None:
                    used.setdefault(record.device.full_url, record.device)
                continue
            resource = dict(entry.resource)
            if record.device is not None:
                resource["device"] = {"reference": device_ids[record.device.full_url]}
            try:
                checked_body(resource, "Observation", settings=self.ctx.settings)
            except FhirError as exc:
                out.problems.append((record.location, "not stored: " + refusal(exc)))
                continue
            rid = new_id()
            creates.append((resource, rid))
            ids[entry.full_url] = f"Observation/{rid}"
            out.created += 1
            out.entries += 1
            targets.append(entry)
            if record.device is not None:
                used.setdefault(record.device.full_url, record.device)
        if targets:
            provenance = self.run.provenance(targets, list(used.values()))
            self.ctx.store.lock_all(tx, [_lock_key(provenance)])
            (found,) = self._matches(tx, "Provenance", [provenance])
            out.entries += 1
            if len(found) > 1:
                raise _several(provenance)
            if found:
                out.existing += 1
            elif not any(r["resourceType"] == "Observation" for r, _ in creates):
                out.entries -= 1  # nothing new: no activity to record (a file's repeats, say)
            else:
                resource = _with_ids(provenance.resource, {**ids, **device_ids})
                creates.append((checked_body(resource, "Provenance", settings=self.ctx.settings), new_id()))
                out.created += 1
        records: list[tuple[str, str]] = []
        for resource, rid in creates:
            tx.create(resource, rid)
            if resource["resourceType"] == "Observation":
                records.append(("Observation", rid))
        turn.take()
        tx.flush()
        if self.grants is not None:
            enforce.check_written_together(tx, self.grants, records)
        return out

    # ------------------------------------------------------------ lookups
    def _matches(self, tx: Tx, res_type: str, entries: list[Entry]) -> list[list[str]]:
        """The ids of the current resources each entry's `ifNoneExist` (one token) matches, in
        one indexed statement per `_LOOKUP` codes, within the requester's grants."""
        if not entries:
            return []
        values: list[TokenValue] = []
        param: _Parameter | None = None
        for e in entries:
            code, value = _criterion(e)
            param = self._parameter(res_type, code, value)
            values.append(parse_token(value, code))
        assert param is not None
        restrict = self._restriction(res_type)
        rows: dict[str, list[tuple[str, str | None]]] = {}
        codes = sorted({v.code for v in values if v.code is not None})
        for i in range(0, len(codes), _LOOKUP):
            stmt = token_batch.statement(
                res_type, param.ids, codes[i : i + _LOOKUP], restrict, postgres=not self.ctx.store.sqlite
            )
            for row in tx.run_search(stmt):
                rows.setdefault(row.code, []).append((str(row.res_id), row.system))
        out: list[list[str]] = []
        for v in values:
            code = (v.code or "")[: token_batch.MAX]
            out.append(
                sorted(
                    {rid for rid, system in rows.get(code, ()) if token_batch.token_holds(v, system, code)}
                )
            )
        return out

    def _parameter(self, res_type: str, code: str, value: str) -> _Parameter:
        """The token parameter of `code` on `res_type`, planned once per run (400 if it is none)."""
        known = self._parameters.get((res_type, code))
        if known is None:
            q = parse(self.ctx, res_type, [(code, value)], lenient=False)
            if token_batch.token_value(q) is None:
                raise ValueError(f"{res_type}?{code}={value} is not one token")
            known = self._parameters[(res_type, code)] = _Parameter(*token_batch.parameter(q))
        return known

    def _restriction(self, res_type: str) -> Any:
        """The requester's grants on the records' lookups; the run's Devices and Provenance, which
        belong to no patient's compartment, are the server's (as the job's Task is)."""
        if self.grants is None or res_type != "Observation" or res_type not in self.grants:
            return None
        return enforce.grants_condition(self.grants[res_type], res_type, self.ctx.settings.base)


_SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005
_switching_lock = threading.Lock()
_switching_users = 0
_switching_before = 0.0


@contextmanager
def _quick_switching() -> Iterator[None]:
    """A shorter GIL switch interval while chunks are in flight together
    (https://docs.python.org/3/library/sys.html#sys.setswitchinterval).

    A chunk waiting on its connection needs the GIL back after each round trip (about 25 per
    chunk: a COPY per table, the lookup, the commit), and may wait up to the interval for the chunk
    that is computing to yield it: up to ~0.1 s per chunk at 5 ms. Measured, the difference was
    within the noise of four runs (bench/README.md "Idempotent writes"). Process-wide, so it is set
    by the first pipelined run and restored by the last."""
    global _switching_users, _switching_before
    with _switching_lock:
        if _switching_users == 0:
            _switching_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_switching_before, _SWITCH_INTERVAL))
        _switching_users += 1
    try:
        yield
    finally:
        with _switching_lock:
            _switching_users -= 1
            if _switching_users == 0:
                sys.setswitchinterval(_switching_before)


def _criterion(entry: Entry) -> tuple[str, str]:
    assert entry.if_none_exist is not None
    ((code, value),) = parse_qsl(entry.if_none_exist, keep_blank_values=True)
    return code, value


def _lock_key(entry: Entry) -> str:
    assert entry.if_none_exist is not None
    return lock_key(entry.resource["resourceType"], entry.if_none_exist)


def _several(entry: Entry) -> FhirError:
    from ..errors import PreconditionFailed

    rtype = entry.resource["resourceType"]
    return PreconditionFailed(f"ifNoneExist '{entry.if_none_exist}' matches more than one {rtype}")


def _subject(entry: Entry) -> str:
    return str((entry.resource.get("subject") or {}).get("reference", ""))


def _with_ids(resource: dict[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    """A copy of a Provenance with its urn:uuid target and agent references replaced by ids."""
    out = dict(resource)
    out["target"] = [{"reference": ids[t["reference"]]} for t in resource["target"]]
    agents = []
    for agent in resource.get("agent", []):
        ref = (agent.get("who") or {}).get("reference")
        resolved = ids.get(ref) if isinstance(ref, str) else None
        agents.append({**agent, "who": {"reference": resolved}} if resolved else agent)
    out["agent"] = agents
    return out


def write(
    ctx: Context,
    run: IngestRun,
    tally: Tally,
    *,
    grants: Mapping[str, Access] | None = None,
    chunk_size: int = CHUNK,
    on_progress: Callable[[Tally], None] | None = None,
) -> Tally:
    """Write a run into this server: sample records in bulk (:class:`BulkIngest`); the Bundles a
    document adapter builds (a lab report, a DICOM file: a few resources about the run's patient
    that refer to each other) as transactions, as before (`ingest.write_bundles`)."""
    if run.of_documents_adapter:
        return write_bundles(ctx, run, tally, on_bundle=on_progress)
    return BulkIngest(ctx, run, tally, grants=grants, chunk_size=chunk_size).write(on_progress)
