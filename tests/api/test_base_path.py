"""The server answers under the path of FHIR_BASE_URL (issue 13): with `http://testserver/fhir` the FHIR
API, the discovery document and every URL it advertises work under /fhir; paths outside it are 404s,
except the probes. On the old code the routes were at the root and the advertised URLs answered 401/404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import clients
from fhir_server.auth.operator_token import mint
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories

BASE = "http://testserver/fhir"
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def served(store: Store, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(base_url=BASE + "/", data_dir=tmp_path, allow_anonymous=False)
    store = Store(store.engine, base=settings.base)
    with TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False) as c:
        yield c, settings


def test_fhir_api_and_tokens_work_under_the_base_path(
    served: tuple[TestClient, Settings], store: Store
) -> None:
    c, settings = served
    with store.write() as tx:
        clients.register(tx.conn, "ops", "public", redirect_uris=["http://localhost/cb"], name="ops")
    auth = {
        "Authorization": f"Bearer {mint(Store(store.engine, base=settings.base), settings, 'ops', 'system/*.cruds', 5)}"
    }
    assert c.get("/metadata").json()["implementation"]["url"] == BASE
    created = c.post("/Patient", json=factories.patient(), headers={**FHIR, **auth})
    assert created.status_code == 201
    assert created.headers["location"].startswith(f"{BASE}/Patient/")
    pid = created.json()["id"]
    assert c.get(f"/Patient/{pid}", headers=auth).status_code == 200
    bundle = c.get("/Patient", params={"_count": "1"}, headers=auth).json()
    assert all(link["url"].startswith(f"{BASE}/Patient") for link in bundle["link"])
    # a transaction POSTed to [base] itself, without a trailing slash
    tx = c.post(
        BASE, json=factories.transaction(factories.post_entry(factories.patient())), headers={**FHIR, **auth}
    )
    assert tx.status_code == 200, tx.text


def test_every_advertised_discovery_url_answers_under_the_base_path(
    served: tuple[TestClient, Settings],
) -> None:
    c, _ = served
    config = c.get("/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == f"{BASE}/auth/token"
    jwks = c.get(config["jwks_uri"])
    assert jwks.status_code == 200 and jwks.json()["keys"]
    token = c.post(config["token_endpoint"], data={"grant_type": "client_credentials"})
    assert (
        token.status_code in (400, 401) and "error" in token.json()
    )  # the OAuth endpoint, not a 404/401 FHIR
    authorize = c.get(config["authorization_endpoint"])
    assert authorize.status_code != 404


def test_outside_the_base_path_only_the_probes_answer(served: tuple[TestClient, Settings]) -> None:
    c, _ = served
    r = c.get("http://testserver/metadata")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert c.get("http://testserver/fhirish/metadata").status_code == 404
    assert c.get("http://testserver/healthz").status_code == 200
    assert c.get("http://testserver/readyz").status_code == 200
    assert c.get("/healthz").status_code == 200
