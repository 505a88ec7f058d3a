"""Acceptance: the `smart-fetch` bulk client (https://github.com/smart-on-fhir/smart-fetch) exports from a
real server, authenticating with SMART Backend Services (https://hl7.org/fhir/uv/bulkdata/STU2/authorization.html).

A uvicorn server on a free localhost port in a background thread; smart-fetch runs as a separate
process: discovery (/.well-known/smart-configuration), a client_credentials token with an RS384
client assertion, `$export` kick-off, polling, downloads, and the DELETE at the end.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.jobs import tables
from fhir_server.store.sql import Store
from tests import factories
from tests.auth.smart_flow import public_jwks, register, rsa_key
from tests.bulk_support import put, settings_for
from tests.live_server import free_port, serving

SMART_FETCH = Path(sys.executable).with_name("smart-fetch")


@pytest.fixture
def live_server(store: Store, tmp_path: Path, smart_data_dir: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = settings_for(tmp_path, base_url=base, data_dir=smart_data_dir, bulk_min_poll_seconds=0.5)
    with serving(create_app(settings, store=store), port):
        yield base


@pytest.mark.slow
def test_smart_fetch_exports_with_backend_services_authorization(
    live_server: str, store: Store, tmp_path: Path
) -> None:
    """A Bulk Data Provider made of the authorization server (tokens for a Backend Services client),
    the FHIR resource server (kick-off, status, manifest) and the built-in output file server serves
    a real bulk client end to end (@12, @13, @14, @19, @20, @21, @22, @23, @25)."""
    assert SMART_FETCH.exists(), "smart-fetch is a dev dependency: run ./scripts/bootstrap"
    key = rsa_key("bulk-key")
    register(store, "smart-fetch", "asymmetric", jwks=public_jwks(key), scope="system/*.rs")
    private = {**key.as_dict(private=True), "alg": "RS384", "key_ops": ["sign"]}
    (tmp_path / "key.jwks").write_bytes(orjson.dumps({"keys": [private]}))
    (pid,) = put(store, factories.patient("Fetch"))
    put(store, factories.observation(pid), factories.observation(pid, value=80))

    out = tmp_path / "out"
    command = [
        str(SMART_FETCH),
        "bulk",
        str(out),
        "--fhir-url",
        live_server,
        "--smart-client-id",
        "smart-fetch",
        "--smart-key",
        str(tmp_path / "key.jwks"),
        "--type",
        "Patient,Observation",
        "--no-default-filters",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    found: dict[str, list[dict[str, object]]] = {}
    for path in out.rglob("*.ndjson*"):
        if path.name.startswith("log."):  # smart-fetch's own log of the export
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for line in f:
                row = orjson.loads(line)
                found.setdefault(str(row["resourceType"]), []).append(row)
    assert [p["id"] for p in found["Patient"]] == [pid]
    assert len(found["Observation"]) == 2
    with store.engine.connect() as conn:  # smart-fetch DELETEs the finished export
        statuses = [row.status for row in conn.execute(tables.job.select())]
    assert statuses == ["cancelled"]
    shutil.rmtree(out, ignore_errors=True)
