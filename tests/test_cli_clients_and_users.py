"""The `fhir-server clients` and `fhir-server users` commands (fhir_server/cli.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fhir_server import cli
from fhir_server.auth import invitations
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("FHIR_DATABASE_URL", url)
    return url


def test_clients_add_and_list(database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        cli.main(
            [
                "clients",
                "add",
                "--id",
                "web",
                "--type",
                "symmetric",
                "--redirect-uri",
                "https://a.example.org/cb",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "client_secret: " in out
    jwks = tmp_path / "jwks.json"
    from tests.auth.smart_flow import public_jwks, rsa_key

    jwks.write_text(json.dumps(public_jwks(rsa_key("k1"))))
    assert (
        cli.main(
            [
                "clients",
                "add",
                "--id",
                "bulk",
                "--type",
                "asymmetric",
                "--jwks",
                str(jwks),
                "--scope",
                "system/*.rs",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["clients", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["client_id"], c["type"], c["scope"]) for c in listed] == [
        ("bulk", "asymmetric", "system/*.rs"),
        ("web", "symmetric", ""),
    ]
    assert "secret" not in json.dumps(listed)


def test_a_bad_client_is_refused_with_a_message(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clients", "add", "--id", "x", "--type", "public"]) == 2
    assert "redirect URI" in capsys.readouterr().err


def test_users_add_reads_the_password_from_stdin_and_lists_without_secrets(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["users", "add", "--username", "anna", "--fhir-user", "Patient/123", "--totp"]) == 0
    out = capsys.readouterr().out
    assert "created user anna (Patient/123)" in out and "otpauth://totp/" in out
    assert cli.main(["users", "list"]) == 0
    assert capsys.readouterr().out == "anna\tPatient/123\ttotp\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["users", "add", "--username", "bob"]) == 2


def test_invites_add_prints_codes_once_and_list_shows_only_their_state(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_SELF_REGISTRATION", "invite")
    assert cli.main(["invites", "add", "--days", "3", "--count", "2"]) == 0
    printed = capsys.readouterr()
    codes = printed.out.split()
    assert len(codes) == 2 and all(invitations.canonical(c) for c in codes)
    assert "shown only now" in printed.err and "note:" not in printed.err
    assert cli.main(["invites", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all("\topen\t" in line for line in listed)
    assert not any(c in line or c.replace("-", "") in line for c in codes for line in listed)
    assert cli.main(["invites", "add", "--days", "0"]) == 2
    assert "error: --days" in capsys.readouterr().err


def test_users_reset_link_prints_a_single_use_link_under_the_base_url_and_audits_it(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import re

    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.settings import Settings

    monkeypatch.setenv("FHIR_AUDIT", "true")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["users", "add", "--username", "anna", "--fhir-user", "Patient/123"]) == 0
    capsys.readouterr()
    base = "http://testserver/fhir"
    assert cli.main(["users", "reset-link", "anna", "--hours", "2", "--base-url", base]) == 0
    printed = capsys.readouterr()
    link = printed.out.strip()
    assert re.fullmatch(rf"{re.escape(base)}/auth/reset\?token=[A-Za-z0-9_-]{{43}}", link), link
    assert "single use, valid for 2 hour(s)" in printed.err and link not in printed.err
    assert cli.main(["users", "reset-link", "nobody", "--base-url", base]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err
    assert cli.main(["users", "reset-link", "anna", "--hours", "0"]) == 2
    assert "error: --hours" in capsys.readouterr().err

    settings = Settings(
        database_url=database, base_url=base, data_dir=tmp_path / "data", allow_anonymous=False, audit=True
    )
    with TestClient(create_app(settings), base_url=base, follow_redirects=False) as http:
        page = http.get(link)
        assert page.status_code == 200 and 'id="reset-form"' in page.text
        fields = dict(re.findall(r'name="(csrf|token)" value="([^"]*)"', page.text))
        form = {**fields, "new": "a brand new passphrase", "new2": "a brand new passphrase"}
        assert http.post(f"{base}/auth/reset", data=form).status_code == 200
        assert http.get(link).status_code == 404
        http.app.state.audit.flush()  # type: ignore[attr-defined]
        store = http.app.state.auth.store  # type: ignore[attr-defined]
    with store.read() as tx:
        events = [json.loads(s.content) for s in tx.current_of_type("AuditEvent", limit=100)]
    kinds = [(e.get("subtype") or [{}])[0].get("code") for e in events]
    assert "password-reset-link" in kinds and "password-reset" in kinds, kinds
