"""The `fhir-server` command: serve, migrate, and the operator commands (argparse sub-commands)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

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
    p.add_argument(
        "--no-demo",
        action="store_true",
        help="do not create the demo patient, users and SMART client in an empty database",
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
    engine = make_engine(settings.database_url)
    upgrade(engine)
    if not ns.no_demo:
        from .auth.demo import bootstrap_demo
        from .store.sql import Store

        base = os.environ.get("FHIR_BASE_URL", settings.base)
        bootstrap_demo(Store(engine, base=base), base)
    engine.dispose()
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=ns.workers or settings.workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # the client address is the socket peer unless FHIR_TRUSTED_PROXIES says otherwise
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
    from .job_kinds import register
    from .jobs.queue import run_worker

    register()
    return run_worker(settings, ns.concurrency)


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="an NDJSON file (.ndjson, .ndjson.gz) or a directory of them")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes validating lines")


@command("import", "load NDJSON resources (batched, indexed; an existing id is updated)", _import_args)
def import_files(ns: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .jobs.import_command import run_import

    return run_import(settings, Path(ns.path), workers=ns.workers)


def _profiles_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["add", "list"], help="add a package, or list the installed ones")
    p.add_argument("source", nargs="?", help="add: an npm package name[@version] or a .tgz file")


@command("profiles", "add a FHIR npm package of profiles (StructureDefinitions) or list them", _profiles_args)
def profiles_command(ns: argparse.Namespace, settings: Settings) -> int:
    from profiles import packages

    if ns.action == "add":
        if not ns.source:
            print("profiles add needs a package name or a .tgz file")
            return 2
        target = packages.install(ns.source, settings.data_dir)
        print(f"installed {target.parent.name}: {len(packages.profiles_of(target))} StructureDefinitions")
        return 0
    for name, version, path in packages.installed(settings.data_dir):
        print(f"{name} {version}: {len(packages.profiles_of(path))} StructureDefinitions")
    return 0


def _ingest_args(p: argparse.ArgumentParser) -> None:
    from .operations.ingest_command import add_arguments

    add_arguments(p)


@command("ingest", "ingest a health data file (CSV, wearables, lab reports, DICOM)", _ingest_args)
def ingest_file(ns: argparse.Namespace, settings: Settings) -> int:
    from .operations.ingest_command import run_command

    return run_command(ns, settings)


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client", default="demo-app", help="a registered client id (default: demo-app)")
    p.add_argument("--scope", default="system/*.cruds", help="SMART scopes (default: system/*.cruds)")
    p.add_argument("--minutes", type=int, default=60, help="lifetime in minutes (default: 60)")


@command("token", "mint an access token for a registered client (for curl and scripts)", _token_args)
def token(ns: argparse.Namespace, settings: Settings) -> int:
    from .auth.operator_token import mint
    from .errors import FhirError
    from .store.engine import make_engine
    from .store.sql import Store

    try:
        print(
            mint(
                Store(make_engine(settings.database_url), base=settings.base),
                settings,
                ns.client,
                ns.scope,
                ns.minutes,
            )
        )
    except FhirError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


@command("reindex", "rebuild the search index from the stored resources")
def reindex(ns: argparse.Namespace, settings: Settings) -> int:
    from .store.engine import make_engine
    from .store.reindex import reindex as run

    def progress(n: int) -> None:
        print(f"\rindexed {n} resources", end="", file=sys.stderr, flush=True)

    total = run(make_engine(settings.database_url), progress=progress)
    print(f"\nreindexed {total} resources", file=sys.stderr)
    return 0


def _auth_store(settings: Settings) -> Any:
    """The store of the configured database, migrated (for the SMART operator commands)."""
    from .store.engine import make_engine
    from .store.migrate import upgrade
    from .store.sql import Store

    engine = make_engine(settings.database_url)
    upgrade(engine)
    return Store(engine, check_references=settings.check_references, base=settings.base)


def _clients_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="register a SMART client (a symmetric client's secret is printed once)")
    add.add_argument("--id", dest="client_id", required=True, help="the client_id")
    add.add_argument(
        "--type", dest="client_type", required=True, choices=["public", "symmetric", "asymmetric"]
    )
    add.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI (repeatable)")
    add.add_argument("--jwks", type=argparse.FileType("r"), help="file with the client's public JWK Set")
    add.add_argument("--jwks-uri", help="URL of the client's JWK Set (https)")
    add.add_argument("--scope", action="append", default=[], help="pre-authorised scope(s), e.g. system/*.rs")
    add.add_argument("--name", default="", help="name shown on the consent page")
    sub.add_parser("list", help="list registered clients")


@command("clients", "register and list SMART clients", _clients_args)
def clients_command(ns: argparse.Namespace, settings: Settings) -> int:
    import json

    from .auth import clients

    store = _auth_store(settings)
    if ns.action == "list":
        with store.read() as tx:
            for client in clients.all_clients(tx.conn):
                print(json.dumps(client.public_view()))
        return 0
    try:
        with store.write() as tx:
            client, secret = clients.register(
                tx.conn,
                ns.client_id,
                ns.client_type,
                redirect_uris=ns.redirect_uri,
                jwks=json.load(ns.jwks) if ns.jwks else None,
                jwks_uri=ns.jwks_uri,
                scope=" ".join(ns.scope),
                name=ns.name,
            )
    except (clients.RegistrationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"registered {client.client_type} client {client.client_id}")
    if secret is not None:
        print(f"client_secret: {secret}  (shown only now)")
    return 0


def _users_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create a user (password prompted, or read from stdin)")
    add.add_argument("--username", required=True)
    add.add_argument("--fhir-user", help="the FHIR resource of the user, e.g. Patient/123 or Practitioner/9")
    add.add_argument("--totp", action="store_true", help="require a one-time code (prints the secret once)")
    sub.add_parser("list", help="list users")


def _new_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


@command("users", "create and list users who log in to SMART apps", _users_args)
def users_command(ns: argparse.Namespace, settings: Settings) -> int:
    from .auth import totp, users

    store = _auth_store(settings)
    if ns.action == "list":
        with store.read() as tx:
            for user in users.all_users(tx.conn):
                print(
                    f"{user.username}\t{user.fhir_user or '-'}\t{'totp' if user.totp_secret else ''}".rstrip()
                )
        return 0
    try:
        password = _new_password()
        with store.write() as tx:
            user, secret = users.add(
                tx.conn, ns.username, password, fhir_user=ns.fhir_user, with_totp=ns.totp
            )
    except (users.UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"created user {user.username}" + (f" ({user.fhir_user})" if user.fhir_user else ""))
    if secret is not None:
        print(f"TOTP secret: {secret}  (shown only now)")
        print(f"TOTP URI:    {totp.provisioning_uri(secret, user.username, 'fhir-server')}")
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
