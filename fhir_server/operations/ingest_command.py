"""`fhir-server ingest FILE --patient Patient/123`: a health data file into this server's database, or another server's base URL (https://hl7.org/fhir/R4/http.html#transaction).

A progress bar on stderr (records read, resources written, created / already present), then a
summary and the problem report (``file:line N: severity: message``) on stdout. Every batch is a
transaction of conditional creates, so running the command again creates nothing new. Exit
status 0 when anything was ingested, 1 when nothing could be, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx

from ingest.pipeline import formats

from ..errors import FhirError, Invalid, NotFound
from ..interactions import read
from ..interactions.context import Context
from ..settings import Settings
from . import ingest, ingest_bulk
from .ingest import Tally

BAR_WIDTH = 20
LOG_SECONDS = 10.0  # when stderr is not a terminal: one progress line this often


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (``fhir-server ingest --help``)."""
    p.add_argument("file", help="the file to ingest")
    p.add_argument(
        "--format",
        default="auto",
        help=f"auto (guess from name and content, the default) or one of: {', '.join(formats())}",
    )
    p.add_argument("--patient", required=True, help="the patient the data is about: Patient/<id>")
    p.add_argument("--to", metavar="BASE_URL", help="POST to this FHIR server instead of the database")
    p.add_argument("--token", help="with --to: a bearer access token for that server")
    p.add_argument("--timezone", help="zone of times the file gives without one (Europe/Berlin, +01:00)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"records per transaction (default {ingest_bulk.CHUNK} into the database, "
        f"{ingest.DEFAULT_BATCH_SIZE} per Bundle with --to)",
    )
    p.add_argument("--mapping", metavar="JSON_FILE", help="csv: a column mapping for other layouts")


class ProgressBar:
    """On a terminal, one line redrawn at most ten times a second: a moving bar (the total is unknown)
    and the counts; otherwise (a log) one line every :data:`LOG_SECONDS` and one at the end."""

    def __init__(self, out: TextIO, label: str) -> None:
        self.out, self.label = out, label
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last = 0.0
        self._logged = self.started
        self._frame = 0
        self._width = 0

    def line(self, tally: Tally) -> str:
        pos = self._frame % (2 * BAR_WIDTH - 2)
        pos = pos if pos < BAR_WIDTH else 2 * BAR_WIDTH - 2 - pos
        bar = "".join("=" if abs(i - pos) <= 1 else " " for i in range(BAR_WIDTH))
        rate = tally.entries / max(time.monotonic() - self.started, 1e-6)
        problems = len(tally.problems) + tally.not_listed
        return (
            f"{self.label} [{bar}] {tally.records:,} records, {tally.entries:,} resources "
            f"({tally.created:,} created, {tally.existing:,} already present), "
            f"{problems:,} problems, {rate:,.0f}/s"
        )

    def show(self, tally: Tally, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self._frame += 1
        text = self.line(tally)
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        elif force or now - self._logged >= LOG_SECONDS:
            self._logged = now
            self.out.write(text + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()


def summary(tally: Tally, target: str) -> list[str]:
    """The summary lines and the problem report."""
    problems = tally.problems
    shown = len(problems) + tally.not_listed
    by_severity: dict[str, int] = {}
    for p in problems:
        by_severity[p.severity] = by_severity.get(p.severity, 0) + 1
    kinds = ", ".join(f"{n} {s}" for s, n in sorted(by_severity.items()))
    lines = [
        f"{tally.file} ({tally.format}) -> {target}",
        f"  records read:    {tally.records:,}",
        f"  resources:       {tally.entries:,} in {tally.bundles:,} transactions"
        + (f" ({tally.failed_bundles:,} refused)" if tally.failed_bundles else ""),
        f"  created:         {tally.created:,}",
        f"  already present: {tally.existing:,}",
        f"  problems:        {shown:,}" + (f" ({kinds})" if kinds else ""),
    ]
    if problems:
        lines.append("Problem report:")
        lines += [f"  {p}" for p in problems]
        if tally.not_listed:
            lines.append(f"  ... and {tally.not_listed:,} more problems not listed")
    if not tally.ingested:
        lines.append("Nothing could be ingested.")
    return lines


def _in_process(
    settings: Settings, run: ingest.IngestRun, tally: Tally, bar: ProgressBar, chunk_size: int
) -> str:
    from ..store.engine import make_engine
    from ..store.migrate import upgrade
    from ..store.outbox import WriteContext
    from ..store.sql import Store

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        store = Store(engine, check_references=settings.check_references, base=settings.base)
        ctx = Context(store=store, settings=settings, writer=WriteContext("ingest:command"))
        patient_id = run.patient_ref.split("/", 1)[1]
        with store.read() as tx:
            read.read(tx, "Patient", patient_id)
        ingest_bulk.write(ctx, run, tally, chunk_size=chunk_size, on_progress=bar.show)
    finally:
        engine.dispose()
    return settings.database_url.split("@")[-1]  # no password in the output


def _remote(base_url: str, token: str | None, run: ingest.IngestRun, tally: Tally, bar: ProgressBar) -> str:
    headers: Mapping[str, str] = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=300.0) as client:
        ingest.send_bundles(run, tally, base_url, client=client, headers=headers, on_bundle=bar.show)
    return base_url


def run_command(
    ns: argparse.Namespace, settings: Settings, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run ``fhir-server ingest`` with parsed arguments; see the module docstring."""
    out = out or sys.stdout
    err = err or sys.stderr
    path = Path(ns.file)
    options: dict[str, Any] = {"mapping_file": ns.mapping} if ns.mapping else {}
    try:
        if not path.is_file():
            raise Invalid(f"{path}: no such file")
        patient_ref = ingest.patient_reference(ns.patient)
        fmt = ingest.checked_format(ns.format, path)
        tz = ingest.parse_timezone(ns.timezone) if ns.timezone else None
        if ns.batch_size is not None and ns.batch_size < 3:
            raise Invalid("--batch-size must be at least 3")
    except FhirError as exc:
        err.write(f"fhir-server ingest: {exc.message}\n")
        return 2
    run, tally = ingest.open_run(
        path,
        fmt,
        patient_ref,
        batch_size=ns.batch_size or ingest.DEFAULT_BATCH_SIZE,
        default_tz=tz,
        options=options,
    )
    bar = ProgressBar(err, path.name)
    try:
        if ns.to:
            target = _remote(ns.to, ns.token, run, tally, bar)
        else:
            target = _in_process(settings, run, tally, bar, ns.batch_size or ingest_bulk.CHUNK)
    except NotFound as exc:
        bar.clear()
        err.write(f"fhir-server ingest: {exc.message}; create the patient first\n")
        return 1
    bar.show(tally, force=True)
    bar.clear()
    out.write("\n".join(summary(tally, target)) + "\n")
    return 0 if tally.ingested else 1
