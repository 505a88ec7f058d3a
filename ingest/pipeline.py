"""Ingest runs: adapter registry and the sample -> transaction Bundle engine (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ingest.bundle import DEFAULT_BATCH_SIZE, BatchWriter, Entry
from ingest.device import DeviceInfo
from ingest.observation import Sample, SampleError, entry_with_device
from ingest.provenance import ProvenanceSpec, now_instant
from ingest.report import IngestResult, Problem, Severity

DEFAULT_MAX_PROBLEMS = 10_000


@dataclass
class ReadContext:
    """What an adapter gets besides its input: where to report problems and count, and options.

    ``options`` are adapter-specific (the CSV column mapping, say); ``default_tz`` is the zone for
    times the source gives without one (``None``: such times are problems).
    """

    file: str
    options: Mapping[str, Any] = field(default_factory=dict)
    default_tz: tzinfo | None = None
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    max_problems: int = DEFAULT_MAX_PROBLEMS

    def problem(self, location: int | str, message: str, severity: Severity = "error") -> None:
        """Report a problem at a line number or element path of this file."""
        if len(self.problems) < self.max_problems:
            self.problems.append(Problem(self.file, location, message, severity))
        else:
            self.counts["problems_not_listed"] += 1

    def skip(self, kind: str) -> None:
        """Count a source record of a type this adapter does not map."""
        self.counts["skipped"] += 1
        self.counts[f"skipped:{kind}"] += 1


@runtime_checkable
class Adapter(Protocol):
    """A pure source reader: yields :class:`Sample`s and reports problems to the context.

    It must not raise for bad input: a malformed record is a ``ctx.problem(...)`` and is skipped;
    a file it cannot read at all is one problem and no samples. It counts what it read in
    ``ctx.counts["records"]``.
    """

    name: str

    def read(self, path: Path, ctx: ReadContext) -> Iterable[Sample]: ...


@runtime_checkable
class DocumentAdapter(Protocol):
    """A pure reader of whole documents (a lab report, a DICOM file): builds its own transaction Bundles.

    Its resources are more than Observations (DocumentReference, DiagnosticReport, ImagingStudy)
    and belong together, so it returns finished Bundles rather than :class:`Sample`s. Like an
    :class:`Adapter` it never raises for bad input: problems and counts (``records``,
    ``observations``, ``bundles``) go to the context. ``ctx.options["recorded"]`` is the
    Provenance time.
    """

    name: str

    def ingest(self, path: Path, ctx: ReadContext, patient_ref: str) -> list[dict[str, Any]]: ...


AnyAdapter = Adapter | DocumentAdapter

_LAZY: dict[str, str] = {
    "csv": "ingest.csv_format:ADAPTER",
    "apple-health": "ingest.apple_health:ADAPTER",
    "health-connect": "ingest.health_connect:ADAPTER",
    "fitbit": "ingest.fitbit:ADAPTER",
    "open-mhealth": "ingest.open_mhealth:ADAPTER",
    # The document adapters (lab-report, DICOM) expose ADAPTER in their packages.
    "lab-report": "ingest.ocr:ADAPTER",
    "dicom": "ingest.dicom:ADAPTER",
}
_FORMAT_ALIASES: dict[str, str] = {
    "apple": "apple-health",
    "healthkit": "apple-health",
    "hcgateway": "health-connect",
    "healthconnect": "health-connect",
    "omh": "open-mhealth",
    "openmhealth": "open-mhealth",
    "ocr": "lab-report",
    "labs": "lab-report",
}
_ADAPTERS: dict[str, AnyAdapter] = {}
# File signatures (first bytes) of the document formats; DICOM Part 10 has "DICM" after a 128-byte preamble.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "lab-report"),
    (b"\x89PNG\r\n\x1a\n", "lab-report"),
    (b"\xff\xd8\xff", "lab-report"),
    (b"II*\x00", "lab-report"),
    (b"MM\x00*", "lab-report"),
    (b"PK\x03\x04", "apple-health"),
)
_SUFFIXES: dict[str, str] = {
    ".zip": "apple-health",
    ".csv": "csv",
    ".tsv": "csv",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".pdf": "lab-report",
    ".png": "lab-report",
    ".jpg": "lab-report",
    ".jpeg": "lab-report",
    ".tif": "lab-report",
    ".tiff": "lab-report",
}
DICOM_PREFIX_OFFSET = 128


class UnknownFormat(LookupError):
    """No adapter is registered under that format name."""


def register_adapter(name: str, adapter: AnyAdapter | str, *aliases: str) -> None:
    """Register an adapter object, or a lazy ``"module:attribute"`` path to one, under a format name."""
    if isinstance(adapter, str):
        _LAZY[name] = adapter
        _ADAPTERS.pop(name, None)
    else:
        _ADAPTERS[name] = adapter
    for alias in aliases:
        _FORMAT_ALIASES[alias] = name


def formats() -> list[str]:
    """Registered format names (lazy ones included, whether or not their module imports)."""
    return sorted(set(_LAZY) | set(_ADAPTERS))


def get_adapter(fmt: str) -> AnyAdapter:
    """The adapter (sample or document) registered for a format name or alias; raise :class:`UnknownFormat`."""
    name = _FORMAT_ALIASES.get(fmt.strip().lower(), fmt.strip().lower())
    if name in _ADAPTERS:
        return _ADAPTERS[name]
    target = _LAZY.get(name)
    if target is None:
        raise UnknownFormat(f"unknown format {fmt!r}; known: {', '.join(formats())}")
    module_name, _, attr = target.partition(":")
    try:
        adapter = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownFormat(f"format {name!r} is not available: {exc}") from exc
    _ADAPTERS[name] = adapter
    return adapter


def detect_format(path: Path) -> str:
    """Guess the format from the file name and its first bytes (``auto``).

    A known suffix decides (``.csv``, ``.zip``, ``.dcm``, ``.pdf``, ``.png``, ``.jpg``, ``.tif``...);
    otherwise the content: ``DICM`` at byte 128 is DICOM, a PDF/PNG/JPEG/TIFF signature a lab report,
    a zip an Apple Health export, XML Apple Health, JSON one of the wearable formats, else CSV.
    """
    by_suffix = _SUFFIXES.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    try:
        with path.open("rb") as fh:
            raw = fh.read(4096)
    except OSError:
        return "csv"  # the adapter reports the unreadable file
    if raw[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] == b"DICM":
        return "dicom"
    for magic, fmt in _MAGIC:
        if raw.startswith(magic):
            return fmt
    head = raw.decode("utf-8", "replace")
    if "<HealthData" in head or head.lstrip().startswith("<?xml"):
        return "apple-health"
    if head.lstrip().startswith(("{", "[")):
        if "schema_id" in head or '"header"' in head:
            return "open-mhealth"
        if '"data"' in head and ('"app"' in head or '"start"' in head):
            return "health-connect"
        if any(k in head for k in ('"activities-', '"sleep"', '"weight"', '"spo2"', '"dateTime"')):
            return "fitbit"
        return "health-connect"
    return "csv"


class IngestRun:
    """One streaming ingest: iterate it for transaction Bundles; then read ``problems``/``counts``.

    Bundles are produced batch by batch (at most ``batch_size`` entries each), so a large source
    never has to be held in memory. :meth:`result` collects everything into an :class:`IngestResult`.
    """

    def __init__(
        self,
        samples: Callable[[ReadContext], Iterable[Sample]],
        *,
        source: str,
        patient_ref: str,
        ctx: ReadContext,
        batch_size: int = DEFAULT_BATCH_SIZE,
        recorded: str | None = None,
    ) -> None:
        self.source = source
        self.patient_ref = patient_ref
        self.ctx = ctx
        self._samples = samples
        self._writer = BatchWriter(
            batch_size, ProvenanceSpec(source=source, file=ctx.file, recorded=recorded or now_instant())
        )
        self._started = False
        self._documents: Callable[[ReadContext], Iterable[dict[str, Any]]] | None = None

    @classmethod
    def of_documents(
        cls,
        documents: Callable[[ReadContext], Iterable[dict[str, Any]]],
        *,
        source: str,
        patient_ref: str,
        ctx: ReadContext,
    ) -> IngestRun:
        """A run whose Bundles a :class:`DocumentAdapter` builds itself (it counts them in ``ctx``)."""
        run = cls(lambda _c: (), source=source, patient_ref=patient_ref, ctx=ctx)
        run._documents = documents
        return run

    @property
    def problems(self) -> list[Problem]:
        return self.ctx.problems

    @property
    def counts(self) -> Counter[str]:
        return self.ctx.counts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("an IngestRun can be iterated only once")
        self._started = True
        if self._documents is not None:
            yield from self._documents(self.ctx)
            return
        writer, counts = self._writer, self.ctx.counts
        for entry, dev, _ in self._entries():
            if writer.add(entry, (dev,) if dev is not None else ()):
                counts["observations"] += 1
            else:
                counts["duplicates"] += 1
            if writer.has_ready:
                yield from self._emit(writer.drain())
        yield from self._emit(writer.close())

    @property
    def of_documents_adapter(self) -> bool:
        """True when a document adapter builds this run's Bundles (there are no :meth:`records`)."""
        return self._documents is not None

    @property
    def provenance(self) -> ProvenanceSpec:
        """Who/what/when of this run, for the Provenance closing each write."""
        spec = self._writer.provenance
        assert isinstance(spec, ProvenanceSpec)
        return spec

    def records(self) -> Iterator[tuple[Entry, Entry | None, int | str]]:
        """The run's conditional creates one by one, without Bundles: (Observation entry, its Device
        entry or None, where in the file), for a writer that batches them itself; problems and
        counts as in iteration.

        The same Device is the same :class:`Entry` object every time. Duplicates are not removed
        (the writer resolves them); ``counts["observations"]`` is left to it.
        """
        if self._started:
            raise RuntimeError("an IngestRun can be iterated only once")
        if self._documents is not None:
            raise RuntimeError("a document run has Bundles, not records")
        self._started = True
        yield from self._entries()

    def _entries(self) -> Iterator[tuple[Entry, Entry | None, int | str]]:
        """(Observation entry, its Device entry or None, where in the file) of each usable sample;
        a sample that cannot be one is a problem. One Device entry per device; counted at the end."""
        ctx, counts = self.ctx, self.ctx.counts
        source, patient_ref, default_tz = self.source, self.patient_ref, ctx.default_tz
        device_entries: dict[DeviceInfo, Entry] = {}
        # Adapters hand out the same DeviceInfo object again and again: its key, fullUrl and Entry
        # are found once per object (by id; the value holds the object, so the id stays its own).
        known: dict[int, _KnownDevice] = {}
        for sample in self._samples(ctx):
            device = sample.device
            if device is None:
                info = None
            else:
                info = known.get(id(device))
                if info is None or info.device is not device:
                    if len(known) >= _KNOWN_DEVICES:
                        known.clear()
                    info = known[id(device)] = _KnownDevice(device)
            try:
                if info is None:
                    entry = entry_with_device(sample, source, patient_ref, "", None, default_tz)
                else:
                    entry = entry_with_device(
                        sample, source, patient_ref, info.key, info.full_url, default_tz
                    )
            except SampleError as exc:
                ctx.problem(sample.location, str(exc))
                counts["rejected"] += 1
                continue
            dev: Entry | None = None
            if info is not None:
                dev = info.entry
                if dev is None:
                    dev = device_entries.get(info.device)
                    if dev is None:
                        dev = device_entries[info.device] = info.device.entry()
                    info.entry = dev
            yield entry, dev, sample.location
        counts["devices"] = len(device_entries)

    def _emit(self, bundles: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for b in bundles:
            self.ctx.counts["bundles"] += 1
            yield b

    def result(self) -> IngestResult:
        """Run to the end and collect bundles, problems and counts."""
        bundles = list(self)
        return IngestResult(bundles=bundles, problems=self.ctx.problems, counts=self.ctx.counts)


_KNOWN_DEVICES = 1000


class _KnownDevice:
    """A DeviceInfo object of a run, with its key and fullUrl, and its Entry once a sample used it."""

    __slots__ = ("device", "entry", "full_url", "key")

    def __init__(self, device: DeviceInfo) -> None:
        self.device = device
        self.key = device.key
        self.full_url = device.full_url
        self.entry: Entry | None = None


def _file_label(path: Path) -> str:
    return path.name


def iter_file(
    path: str | Path,
    format: str,
    patient_ref: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    default_tz: tzinfo | None = None,
    options: Mapping[str, Any] | None = None,
    recorded: str | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> IngestRun:
    """A streaming :class:`IngestRun` of one file through the adapter for ``format`` (``auto`` guesses).

    A :class:`DocumentAdapter` builds its Bundles itself (one per file; ``batch_size`` does not
    apply); ``recorded`` reaches it as ``options["recorded"]``.
    """
    p = Path(path)
    name = detect_format(p) if format == "auto" else format
    adapter = get_adapter(name)
    opts = dict(options or {})
    if isinstance(adapter, DocumentAdapter) and recorded is not None:
        opts.setdefault("recorded", recorded)
    ctx = ReadContext(file=_file_label(p), options=opts, default_tz=default_tz, max_problems=max_problems)
    if isinstance(adapter, DocumentAdapter):
        document_adapter = adapter

        def documents(c: ReadContext) -> Iterable[dict[str, Any]]:
            if not p.exists():
                c.problem("", f"no such file: {p}", "fatal")
                return ()
            return document_adapter.ingest(p, c, patient_ref)

        return IngestRun.of_documents(documents, source=adapter.name, patient_ref=patient_ref, ctx=ctx)

    sample_adapter: Adapter = adapter

    def samples(c: ReadContext) -> Iterable[Sample]:
        if not p.exists():
            c.problem("", f"no such file: {p}", "fatal")
            return ()
        return sample_adapter.read(p, c)

    return IngestRun(
        samples,
        source=sample_adapter.name,
        patient_ref=patient_ref,
        ctx=ctx,
        batch_size=batch_size,
        recorded=recorded,
    )


def ingest_file(
    path: str | Path,
    format: str,
    patient_ref: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    default_tz: tzinfo | None = None,
    options: Mapping[str, Any] | None = None,
    recorded: str | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> IngestResult:
    """Ingest one file into transaction Bundles (all in memory; use :func:`iter_file` to stream)."""
    return iter_file(
        path,
        format,
        patient_ref,
        batch_size=batch_size,
        default_tz=default_tz,
        options=options,
        recorded=recorded,
        max_problems=max_problems,
    ).result()


def ingest_samples(
    samples: Iterable[Sample],
    *,
    source: str,
    patient_ref: str,
    file: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    default_tz: tzinfo | None = None,
    recorded: str | None = None,
    ctx: ReadContext | None = None,
) -> IngestResult:
    """Samples an adapter (or any caller) already has -> transaction Bundles, problems and counts."""
    context = ctx or ReadContext(file=file, default_tz=default_tz)
    return IngestRun(
        lambda _c: samples,
        source=source,
        patient_ref=patient_ref,
        ctx=context,
        batch_size=batch_size,
        recorded=recorded,
    ).result()
