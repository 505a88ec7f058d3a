"""The `fhir-server` command: serve, migrate, and the operator commands (argparse sub-commands)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from .settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]
_COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, help_text: str, args: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register a sub-command."""

    def wrap(fn: Command) -> Command:
        _COMMANDS[name] = (help_text, fn, args)
        return fn

    return wrap


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (FHIR_HOST)")
    p.add_argument("--port", type=int, help="port (FHIR_PORT)")
    p.add_argument("--workers", type=int, help="worker processes (FHIR_WORKERS)")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="DEVELOPMENT ONLY: serve all data without any token (FHIR_ALLOW_ANONYMOUS)",
    )


@command("serve", "run the FHIR server (migrates the database first)", _serve_args)
def serve(ns: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .store.engine import make_engine
    from .store.migrate import upgrade

    if ns.allow_anonymous:
        os.environ["FHIR_ALLOW_ANONYMOUS"] = "true"
    host = ns.host or settings.host
    port = ns.port or settings.port
    if ns.port and "FHIR_BASE_URL" not in os.environ:
        os.environ["FHIR_BASE_URL"] = (
            f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
        )
    upgrade(make_engine(settings.database_url))
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=ns.workers or settings.workers,
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


@command("migrate", "create or upgrade the database schema")
def migrate(ns: argparse.Namespace, settings: Settings) -> int:
    from .store.engine import make_engine
    from .store.migrate import upgrade

    upgrade(make_engine(settings.database_url))
    print(f"database at {settings.database_url} is up to date")
    return 0


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, help="jobs run at once (FHIR_JOB_THREADS)")


@command("worker", "run Bulk Data jobs from the Redis queue (needs FHIR_REDIS_URL)", _worker_args)
def worker(ns: argparse.Namespace, settings: Settings) -> int:
    from .jobs.queue import run_worker

    return run_worker(settings, ns.concurrency)


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="an NDJSON file (.ndjson, .ndjson.gz) or a directory of them")


@command("import", "load NDJSON resources (batched, indexed; an existing id is updated)", _import_args)
def import_files(ns: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .jobs.import_command import run_import

    return run_import(settings, Path(ns.path))


def _ingest_args(p: argparse.ArgumentParser) -> None:
    from .operations.ingest_command import add_arguments

    add_arguments(p)


@command("ingest", "ingest a health data file (CSV, wearables, lab reports, DICOM)", _ingest_args)
def ingest_file(ns: argparse.Namespace, settings: Settings) -> int:
    from .operations.ingest_command import run_command

    return run_command(ns, settings)


@command("reindex", "rebuild the search index from the stored resources")
def reindex(ns: argparse.Namespace, settings: Settings) -> int:
    from .store.engine import make_engine
    from .store.reindex import reindex as run

    def progress(n: int) -> None:
        print(f"\rindexed {n} resources", end="", file=sys.stderr, flush=True)

    total = run(make_engine(settings.database_url), progress=progress)
    print(f"\nreindexed {total} resources", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _, add_args) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text))
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _COMMANDS[ns.command][1](ns, Settings())


if __name__ == "__main__":
    sys.exit(main())
