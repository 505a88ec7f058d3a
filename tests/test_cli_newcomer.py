"""The newcomer path (issue 13, acceptance 4), as real processes in an empty directory with no FHIR_*
variables: `serve --port` then `token` then a read works (on the old code the token's audience was
:8080 and the read was a 401); under a FHIR_BASE_URL with a path, the same; `token` where there is no
database is one line on stderr and leaves no empty fhir.db behind (on the old code: a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fhir_server import base_url
from fhir_server.settings import Settings
from tests.live_server import free_port

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env | extra


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@contextmanager
def serving(cwd: Path, port: int, *args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`fhir-server serve --port PORT ARGS` in `cwd` until the block ends (its log: cwd/serve.log)."""
    log = (cwd / "serve.log").open("w")  # a file, not a pipe nobody reads: the server never blocks on it
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve", "--no-demo", "--port", str(port), *args],
        cwd=cwd, env=_env(**env), stdout=subprocess.DEVNULL, stderr=log, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _register_client(cwd: Path) -> None:
    r = _cli(
        cwd, "clients", "add", "--id", "demo-app", "--type", "public", "--redirect-uri", "http://localhost/cb"
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_serve_port_then_token_then_read(tmp_path: Path) -> None:
    port = free_port()
    _register_client(tmp_path)
    with serving(tmp_path, port):
        minted = _cli(tmp_path, "token")
        assert minted.returncode == 0, minted.stderr
        assert f"token for http://localhost:{port}" in minted.stderr
        auth = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        r = httpx.get(f"http://127.0.0.1:{port}/Patient", headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["link"][0]["url"].startswith(f"http://localhost:{port}/Patient")
        # an explicit --base-url for another server mints a token this one refuses
        other = _cli(tmp_path, "token", "--base-url", "http://elsewhere:1")
        assert other.returncode == 0
        refused = httpx.get(
            f"http://127.0.0.1:{port}/Patient", headers={"Authorization": f"Bearer {other.stdout.strip()}"}
        )
        assert refused.status_code == 401


@pytest.mark.slow
def test_serve_under_a_base_url_with_a_path(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    _register_client(tmp_path)
    with serving(tmp_path, port, FHIR_BASE_URL=base):
        minted = _cli(tmp_path, "token", FHIR_BASE_URL=base)
        assert minted.returncode == 0, minted.stderr
        auth = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        assert httpx.get(f"{base}/Patient", headers=auth).status_code == 200
        config = httpx.get(f"{base}/.well-known/smart-configuration").json()
        assert httpx.get(config["jwks_uri"]).status_code == 200
        assert httpx.post(
            config["token_endpoint"], data={"grant_type": "client_credentials"}
        ).status_code in (400, 401)
        assert httpx.get(f"http://127.0.0.1:{port}/Patient", headers=auth).status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


def test_token_without_a_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    r = _cli(tmp_path, "token")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no database file at "), r.stderr
    assert "fhir-server migrate" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no empty fhir.db, no fhir-data


def test_token_on_an_unmigrated_or_unreachable_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "fhir.db").write_bytes(b"")
    r = _cli(tmp_path, "token")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "no current schema" in r.stderr
    r = _cli(tmp_path, "token", FHIR_DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/none")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "cannot reach the database" in r.stderr
    assert "secret" not in r.stderr


def test_the_base_url_sources_in_order(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert base_url.for_operator(settings, None)[0] == "http://localhost:8080"
    assert base_url.for_serve(settings, "0.0.0.0", 9000) == "http://localhost:9000"
    base_url.record(settings, "http://localhost:9000")
    assert base_url.for_operator(settings, None)[0] == "http://localhost:9000"
    explicit = Settings(data_dir=tmp_path, base_url="https://fhir.example.org/r4/")
    assert base_url.for_serve(explicit, "0.0.0.0", 9000) == "https://fhir.example.org/r4"
    assert base_url.for_operator(explicit, None)[0] == "https://fhir.example.org/r4"
    assert base_url.for_operator(explicit, "http://x:1/")[0] == "http://x:1"


def test_migrate_never_prints_the_database_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    import psycopg

    from fhir_server import cli
    from tests.conftest import PG_ADMIN

    name = f"fhir_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        host = PG_ADMIN.split("@", 1)[1].rsplit("/", 1)[0]
        monkeypatch.setenv("FHIR_DATABASE_URL", f"postgresql://postgres:hunter2-secret@{host}/{name}")
        assert cli.main(["migrate"]) == 0
        out = capsys.readouterr().out
        assert "is up to date" in out and "hunter2-secret" not in out
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
