"""The `fhir-server` command: serve, migrate, and the operator commands (argparse sub-commands)."""

from __future__ import annotations

import argparse
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

    from . import base_url
    from .store.engine import make_engine
    from .store.migrate import upgrade

    if ns.allow_anonymous:
        os.environ["FHIR_ALLOW_ANONYMOUS"] = "true"
    host = ns.host or settings.host
    port = ns.port or settings.port
    base = base_url.for_serve(settings, host, port)
    os.environ["FHIR_BASE_URL"] = base  # the app (in each uvicorn worker) reads it from there
    engine = make_engine(settings.database_url)
    upgrade(engine)
    if not ns.no_demo:
        from .auth.demo import bootstrap_demo
        from .store.sql import Store

        bootstrap_demo(Store(engine, base=base), base)
    engine.dispose()
    base_url.record(settings, base)  # `fhir-server token` mints for this audience
    print(f"serving {base} (FHIR_BASE_URL; `fhir-server token` uses it too)", file=sys.stderr, flush=True)
    workers = ns.workers or settings.workers
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # the workers add up their metrics in files here (api/metrics.py); removed when serve ends
        metrics_dir = tempfile.mkdtemp(prefix="fhir-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(uvicorn, settings, host, port, workers)
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _run_uvicorn(uvicorn: Any, settings: Settings, host: str, port: int, workers: int) -> None:
    from . import structured_logs

    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        log_config=structured_logs.config(settings.log_format, settings.log_level),  # in every worker
        access_log=False,  # its lines hold query strings: fhir_server.access logs each request instead
        proxy_headers=False,  # the client address is the socket peer unless FHIR_TRUSTED_PROXIES says otherwise
    )


@command("migrate", "create or upgrade the database schema")
def migrate(ns: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from .store.engine import make_engine, normalise_url
    from .store.migrate import upgrade

    upgrade(make_engine(settings.database_url))
    shown = make_url(normalise_url(settings.database_url)).render_as_string(hide_password=True)
    print(f"database at {shown} is up to date")  # never the password (compose logs keep this line)
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
    p.add_argument(
        "--base-url",
        help="the server's base URL, the token's audience (default: FHIR_BASE_URL, else what `serve` recorded)",
    )


@command("token", "mint an access token for a registered client (for curl and scripts)", _token_args)
def token(ns: argparse.Namespace, settings: Settings) -> int:
    from . import base_url
    from .auth.operator_token import mint
    from .errors import FhirError
    from .store.sql import Store

    base, source = base_url.for_operator(settings, ns.base_url)
    settings = Settings(base_url=base)
    engine = _existing_database(settings)
    try:
        minted = mint(Store(engine, base=settings.base), settings, ns.client, ns.scope, ns.minutes)
    except FhirError as exc:
        raise CommandError(exc.message) from None
    finally:
        engine.dispose()
    print(minted)
    print(f"token for {base} ({source})", file=sys.stderr)
    return 0


class CommandError(Exception):
    """An operator mistake: `main` prints it as one line (`error: ...`) and exits with status 2."""


def _existing_database(settings: Settings) -> Any:
    """The engine of the configured database, which must exist and be migrated (nothing is created)."""
    from sqlalchemy.engine import make_url

    from .store.engine import normalise_url
    from .store.migrate import NotReady, open_current

    try:
        return open_current(settings.database_url)
    except NotReady as exc:
        shown = make_url(normalise_url(settings.database_url)).render_as_string(hide_password=True)
        raise CommandError(
            f"{exc} (FHIR_DATABASE_URL={shown}): run this where the server runs, or `fhir-server migrate` first"
        ) from None


@command("reindex", "rebuild the search index from the stored resources")
def reindex(ns: argparse.Namespace, settings: Settings) -> int:
    from .store.reindex import reindex as run

    def progress(n: int) -> None:
        print(f"\rindexed {n} resources", end="", file=sys.stderr, flush=True)

    total = run(_existing_database(settings), progress=progress)
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
    reset = sub.add_parser(
        "reset-link", help="print a single-use link that lets the user set a new password (no mail is sent)"
    )
    reset.add_argument("username")
    reset.add_argument(
        "--hours", type=int, default=24, help="hours the link stays valid (default: 24, at most 168)"
    )
    reset.add_argument(
        "--base-url",
        help="the server's base URL the link starts with (default: FHIR_BASE_URL, else what `serve` recorded)",
    )


def _new_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


@command(
    "users", "create and list users who log in to SMART apps, or make a password reset link", _users_args
)
def users_command(ns: argparse.Namespace, settings: Settings) -> int:
    from .auth import totp, users

    if ns.action == "reset-link":
        return _reset_link(ns, settings)
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


def _reset_link(ns: argparse.Namespace, settings: Settings) -> int:
    """Print a password reset link for the user (auth/password_reset.py); the operator hands it over."""
    import time

    from . import base_url
    from .audit.recorder import record_operator_event
    from .auth import password_reset, users
    from .store.sql import Store

    if not 1 <= ns.hours <= password_reset.MAX_HOURS:
        raise CommandError(f"--hours must be 1 to {password_reset.MAX_HOURS}")
    base, source = base_url.for_operator(settings, ns.base_url)
    engine = _existing_database(settings)
    try:
        store = Store(engine, base=base)
        with store.write() as tx:
            user = users.get_by_username(tx.conn, ns.username)
            if user is None:
                raise CommandError(f"no user {ns.username!r} (see `fhir-server users list`)")
            link = password_reset.issue(tx.conn, user.pk, hours=ns.hours, now=int(time.time()))
        if settings.audit:
            record_operator_event(store, base, "password-reset-link", user=user.subject)
    finally:
        engine.dispose()
    print(password_reset.url(base, link.token))
    print(
        f"single use, valid for {ns.hours} hour(s), replaces any earlier link of {user.username}; "
        f"base URL from {source}; shown only now",
        file=sys.stderr,
    )
    return 0


def _invites_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create invite codes for patient self-registration (printed once)")
    add.add_argument("--days", type=int, default=7, help="days each code stays valid (default: 7)")
    add.add_argument("--count", type=int, default=1, help="how many codes (default: 1)")
    sub.add_parser("list", help="list invites (state and expiry, never the codes)")


@command(
    "invites",
    "create and list invite codes for self-registration (FHIR_SELF_REGISTRATION=invite)",
    _invites_args,
)
def invites_command(ns: argparse.Namespace, settings: Settings) -> int:
    import time

    from .auth import invitations

    now = int(time.time())
    if ns.action == "add" and not (1 <= ns.days <= invitations.MAX_DAYS and 1 <= ns.count <= 1000):
        raise CommandError(f"--days must be 1 to {invitations.MAX_DAYS} and --count 1 to 1000")
    store = _auth_store(settings)
    if ns.action == "list":
        with store.read() as tx:
            for invite in invitations.all_invites(tx.conn):
                view = invite.public_view(now)
                print(f"{view['id']}\t{view['state']}\texpires {view['expires']}")
        return 0
    with store.write() as tx:
        made = [invitations.create(tx.conn, days=ns.days, now=now) for _ in range(ns.count)]
    for code, _expires in made:
        print(code)
    print(f"{len(made)} invite code(s), valid for {ns.days} day(s), shown only now", file=sys.stderr)
    if settings.self_registration != "invite":
        print("note: FHIR_SELF_REGISTRATION is not 'invite': the codes work once it is", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _, add_args) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text))
    ns = parser.parse_args(argv)
    settings = Settings()
    from .structured_logs import configure

    configure(settings.log_format, "info")  # JSON lines with a request id (FHIR_LOG_FORMAT=text: plain)
    try:
        return _COMMANDS[ns.command][1](ns, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
