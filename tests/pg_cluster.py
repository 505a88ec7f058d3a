"""Throw-away PostgreSQL 15 clusters: a primary and its streaming replica (https://www.postgresql.org/docs/15/app-pgbasebackup.html).

Made under a temporary folder on free ports by `initdb` and `pg_basebackup -R`, started and stopped
with `pg_ctl`, as the `postgres` user when this process is root (PostgreSQL refuses to run as root).
Used by the replica tests and `bench/bench_scale.py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

BIN = Path(os.environ.get("FHIR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
logging_collector = off
"""


@dataclass
class Cluster:
    """One running cluster: its folder and port."""

    directory: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run(
            [str(BIN / "pg_ctl"), "-D", str(self.directory), "-l", str(self.directory / "log"), "-w", "start"]
        )

    def stop(self) -> None:
        _run([str(BIN / "pg_ctl"), "-D", str(self.directory), "-m", "fast", "-w", "stop"])

    def sql(self, statement: str, database: str = "postgres") -> object:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            row = cur.fetchone() if cur.description else None
            return None if row is None else row[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    subprocess.run(_as_postgres(cmd), check=True, capture_output=True, timeout=120)


@contextmanager
def primary_and_replica(database: str | None = "fhir") -> Iterator[tuple[Cluster, Cluster]]:
    """A primary (with `database` created, unless None), and a streaming replica of it; both removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="fhir-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    primary = Cluster(root / "primary", free_port())
    replica = Cluster(root / "replica", free_port())
    started: list[Cluster] = []
    try:
        _run(
            [str(BIN / "initdb"), "-D", str(primary.directory), "-A", "trust", "-U", "postgres", "--no-sync"]
        )
        _append(primary.directory / "postgresql.conf", CONF.format(port=primary.port, sockets=root))
        primary.start()
        started.append(primary)
        if database is not None:
            primary.sql(f'CREATE DATABASE "{database}"')
        _run(
            [
                str(BIN / "pg_basebackup"),
                "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(replica.directory), "-R", "-X", "stream", "-c", "fast", "--no-sync",
            ]
        )  # fmt: skip
        _append(replica.directory / "postgresql.conf", f"port = {replica.port}\n")
        replica.start()
        started.append(replica)
        wait_streaming(replica)
        yield primary, replica
    finally:
        for cluster in reversed(started):
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped by the test
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_streaming(replica: Cluster, timeout: float = 30.0) -> None:
    """Until the replica's WAL receiver streams from the primary."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if replica.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming":
                return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not start streaming")
        time.sleep(0.1)


def wait_caught_up(primary: Cluster, replica: Cluster, timeout: float = 30.0) -> None:
    """Until the replica has replayed everything the primary has written so far.

    The target is the WAL *insert* position: these clusters commit with `synchronous_commit = off`, so
    a commit record may sit in the primary's WAL buffers, past `pg_current_wal_lsn()` (the write
    position), until the WAL writer flushes it; only then is it streamed. Waiting for the write
    position let a read right after the wait miss a committed row.
    """
    target = primary.sql("SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + timeout
    while not replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"):
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not catch up")
        time.sleep(0.05)


def _append(path: Path, text: str) -> None:
    # The folder belongs to postgres; root may still append (and the owner stays postgres).
    with path.open("a") as file:
        file.write(text)
