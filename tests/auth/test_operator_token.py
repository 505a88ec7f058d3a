"""`fhir-server token` mints a working system access token for a registered client, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import clients
from fhir_server.auth.operator_token import mint
from fhir_server.errors import Invalid
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories


def _settings(tmp_path: Path) -> Settings:
    return Settings(base_url="http://testserver", data_dir=tmp_path, allow_anonymous=False)


def test_minted_token_reads_and_a_read_scope_cannot_write(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with store.write() as tx:
        clients.register(tx.conn, "ops", "public", redirect_uris=["http://localhost/cb"], name="ops")
    read_only = mint(store, settings, "ops", "system/*.rs", 5)
    writer = mint(store, settings, "ops", "system/*.cruds", 5)
    with TestClient(create_app(settings, store=store), base_url="http://testserver") as client:
        assert client.get("/Patient").status_code == 401
        created = client.post(
            "/Patient", json=factories.patient(), headers={"Authorization": f"Bearer {writer}"}
        )
        assert created.status_code == 201
        assert client.get("/Patient", headers={"Authorization": f"Bearer {read_only}"}).json()["total"] == 1
        denied = client.post(
            "/Patient", json=factories.patient(), headers={"Authorization": f"Bearer {read_only}"}
        )
        assert denied.status_code == 403


def test_minting_for_an_unknown_client_or_non_system_scope_is_refused(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(Invalid):
        mint(store, settings, "nobody", "system/*.rs", 5)
    with store.write() as tx:
        clients.register(tx.conn, "ops", "public", redirect_uris=["http://localhost/cb"], name="ops")
    with pytest.raises(Invalid):
        mint(store, settings, "ops", "patient/*.rs", 5)
