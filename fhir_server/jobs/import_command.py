"""`fhir-server import FILE_OR_DIR` (https://github.com/smart-on-fhir/bulk-import/blob/master/import.md).

Bulk import from the command line; the work is jobs/import_.py.

A progress line on stderr (file, percent, resources/s), one line per bad input line on stderr
(`file:line: message`), and a summary on stdout. Exit status 0 when every line was imported, 1 when
some failed, 2 when the path does not exist.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TextIO

from ..settings import Settings
from ..store.engine import make_engine
from ..store.migrate import upgrade
from ..store.sql import Store
from . import import_
from .import_ import LineError, Tally


class Progress:
    """A one-line progress display, redrawn at most ten times a second."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()
        self._last = 0.0
        self.tty = out.isatty()

    def show(self, file: str, done: int, size: int, tally: Tally, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        rate = tally.stored / max(now - self.start, 1e-6)
        percent = 100.0 * done / size if size else 100.0
        line = (
            f"{Path(file).name}: {percent:5.1f}%  {tally.stored} stored, {tally.failed} failed, {rate:,.0f}/s"
        )
        if self.tty:
            self.out.write("\r" + line.ljust(100))
        elif force:
            self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.tty:
            self.out.write("\r" + " " * 100 + "\r")
            self.out.flush()


def _pool(workers: int) -> ProcessPoolExecutor | None:
    """Worker processes that prepare lines (forked after the models are loaded, so they start warm)."""
    if workers <= 1:
        return None
    from ..warmup import warm_up

    warm_up()  # models, UCUM tables and index plans loaded (and frozen) once, before the fork
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_prepare_process
    )


def _prepare_process() -> None:
    """A preparing process does nothing but bulk work: rarer cyclic collections for its whole life."""
    import gc

    from ..warmup import BULK_GC_THRESHOLD

    gc.set_threshold(*BULK_GC_THRESHOLD)


def run_import(
    settings: Settings,
    path: Path,
    *,
    workers: int = 1,
    err: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Import a file or directory into the configured database; see the module docstring.

    `workers` > 1 validates and indexes in that many processes while this one writes.
    """
    err = err or sys.stderr
    out = out or sys.stdout
    if not path.exists():
        err.write(f"{path}: no such file or directory\n")
        return 2
    pool = _pool(workers)  # before any database connection exists, so none is shared with a child
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = Store(engine, check_references=False, base=settings.base)
    progress = Progress(err)

    def report(error: LineError) -> None:
        progress.clear()
        where = f" at {', '.join(error.expression)}" if error.expression else ""
        err.write(f"{error.source}:{error.line}: {error.message}{where}\n")

    def show(file: str, done: int, size: int, tally: Tally) -> None:
        progress.show(file, done, size, tally, force=done >= size)

    started = time.monotonic()
    try:
        tally = import_.load(store, path, on_error=report, on_progress=show, pool=pool)
    finally:
        if pool is not None:
            pool.shutdown()
    progress.clear()
    seconds = time.monotonic() - started
    out.write(
        f"{tally.stored} resources imported ({tally.created} created, {tally.updated} updated, "
        f"{tally.unchanged} unchanged), {tally.failed} lines failed, in {seconds:.1f} s\n"
    )
    engine.dispose()
    return 1 if tally.failed else 0
