"""Bulk import of NDJSON (https://github.com/smart-on-fhir/bulk-import/blob/master/import.md): bad lines
are reported and never stop the good ones; gzip; a killed import resumes; HTTP `$import`."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.jobs import import_, job, worker
from fhir_server.jobs.import_command import run_import
from fhir_server.settings import Settings
from fhir_server.store import bulk_write, planner_statistics
from fhir_server.store.sql import Store
from tests import factories
from tests.bulk_support import BASE, settings_for, wait_done


def ndjson(*items: Any) -> bytes:
    return b"".join((item if isinstance(item, bytes) else orjson.dumps(item)) + b"\n" for item in items)


def _count(store: Store, rtype: str) -> int:
    with store.read() as tx:
        return tx.count_history(res_type=rtype)


def _load(store: Store, path: Path) -> tuple[import_.Tally, list[import_.LineError]]:
    errors: list[import_.LineError] = []
    return import_.load(store, path, on_error=errors.append), errors


def test_bad_lines_are_reported_and_the_good_ones_imported(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "mixed.ndjson"
    source.write_bytes(
        ndjson(
            {**factories.patient("Good"), "id": "p1"},
            b"{not json",
            {"resourceType": "Patient", "birthDate": "not-a-date"},
            {"resourceType": "Spaceship"},
            b"",
            {**factories.observation("p1"), "id": "o1"},
        )
    )
    tally, errors = _load(store, source)
    assert (tally.created, tally.failed) == (2, 3)
    assert [e.line for e in errors] == [2, 3, 4]
    assert "JSON" in errors[0].message
    assert errors[1].expression == ("Patient.birthDate",)
    assert _count(store, "Patient") == 1 and _count(store, "Observation") == 1


def test_importing_the_same_file_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "p.ndjson"
    source.write_bytes(ndjson(*({**factories.patient(f"P{i}"), "id": f"p{i}"} for i in range(5))))
    first, _ = _load(store, source)
    again, _ = _load(store, source)
    assert (first.created, again.created, again.unchanged) == (5, 0, 5)
    assert _count(store, "Patient") == 5


def test_gzip_files_and_directories_are_read(store: Store, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.ndjson.gz").write_bytes(gzip.compress(ndjson({**factories.patient(), "id": "a"})))
    (tmp_path / "in" / "b.ndjson").write_bytes(ndjson({**factories.patient(), "id": "b"}))
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    tally, errors = _load(store, tmp_path / "in")
    assert (tally.created, errors) == (2, [])


def test_lines_prepared_by_a_pool_give_the_same_result(store: Store, tmp_path: Path) -> None:
    """`fhir-server import --workers N` validates and indexes elsewhere while one process writes."""
    from concurrent.futures import ThreadPoolExecutor

    from fhir_server.jobs import import_ as module

    source = tmp_path / "p.ndjson"
    rows = [{**factories.patient(f"P{i}"), "id": f"p{i}"} for i in range(2500)]
    source.write_bytes(ndjson(*rows[:10], b"{bad", *rows[10:], rows[0]))
    errors: list[import_.LineError] = []
    with ThreadPoolExecutor(2) as pool:
        tally = module.load(store, source, on_error=errors.append, pool=pool)
    assert (tally.created, tally.unchanged, tally.failed) == (2500, 1, 1)
    assert [e.line for e in errors] == [11]
    assert _count(store, "Patient") == 2500


def test_a_batch_that_fails_is_retried_one_resource_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One resource the database refuses fails alone; the rest of its batch is stored whole."""
    real = bulk_write.write

    def picky(s: Store, resources: list[dict[str, Any]], indexes: Any = None, **options: Any) -> list[str]:
        if any(r["id"] == "bad" for r in resources):
            raise RuntimeError("refused by the database")
        return real(s, resources, indexes, **options)

    monkeypatch.setattr(bulk_write, "write", picky)
    source = tmp_path / "p.ndjson"
    source.write_bytes(ndjson(*({**factories.patient(), "id": i} for i in ("a", "bad", "c"))))
    tally, errors = _load(store, source)
    assert (tally.created, tally.failed, [e.line for e in errors]) == (2, 1, [2])
    with store.read() as tx:
        assert tx.current("Patient", "bad") is None
        assert tx.current("Patient", "c") is not None


def test_the_command_prints_line_errors_and_a_summary(store: Store, tmp_path: Path) -> None:
    """`fhir-server import FILE`: per-line errors on stderr, a summary on stdout, exit 1 on errors."""
    source = tmp_path / "in.ndjson"
    source.write_bytes(ndjson({**factories.patient(), "id": "p1"}, b"[]"))
    url = store.engine.url.render_as_string(hide_password=False)
    err, out = io.StringIO(), io.StringIO()
    assert run_import(Settings(database_url=url), source, err=err, out=out) == 1
    assert f"{source}:2:" in err.getvalue()
    assert "1 resources imported (1 created" in out.getvalue()
    assert run_import(Settings(database_url=url), tmp_path / "missing", err=err, out=out) == 2


def _import_job(store: Store, inputs: list[dict[str, Any]]) -> job.Job:
    return job.create(
        store,
        kind="import",
        client_id=None,
        request_url=f"{BASE}/$import",
        params={"inputs": inputs},
        transaction_time=0,
        max_active=100,
        retry_after=1,
    )


def test_a_killed_import_job_resumes_after_its_last_checkpoint(store: Store, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, job_lease_seconds=5)
    source = tmp_path / "big.ndjson"
    rows = [{**factories.patient(f"P{i}"), "id": f"p{i}"} for i in range(2500)]
    source.write_bytes(ndjson(*rows[:1200], b"oops", *rows[1200:]))
    created = _import_job(store, [{"url": "big.ndjson", "path": str(source), "type": "Patient"}])
    owner = job.worker_id()
    claimed = job.claim(store, created.id, owner, 5)
    assert claimed is not None
    checks = iter([True, False])  # dies at the second checkpoint (after 2,000 lines)
    from fhir_server.jobs.handlers import LeaseLost

    with pytest.raises(LeaseLost):
        import_.run(store, settings, claimed, owner, lambda: next(checks))
    from sqlalchemy import update

    from fhir_server.jobs import tables

    with store.engine.begin() as conn:
        conn.execute(update(tables.job).where(tables.job.c.id == created.id).values(heartbeat=0))
    assert worker.run(store, settings, created.id) == "done"
    finished = job.get(store, created.id)
    assert finished is not None and finished.status == "completed"
    (item,) = finished.outputs
    assert (item["count"], item["failed"], item["type"]) == (2500, 1, "Patient")
    assert _count(store, "Patient") == 2500  # the re-applied batch created no versions
    (error,) = finished.errors
    errors_file = tmp_path / "data" / "bulk" / created.id / error["file"]
    (outcome,) = [orjson.loads(line) for line in errors_file.read_bytes().splitlines()]
    assert "big.ndjson line 1201" in outcome["issue"][0]["diagnostics"]


# ---------------------------------------------------------------- HTTP $import


@pytest.fixture
def import_client(store: Store, tmp_path: Path) -> Any:
    from fhir_server.api.deps import get_principal
    from fhir_server.app import create_app
    from tests.bulk_support import Caller, system_client

    settings = settings_for(tmp_path, bulk_import_dir=tmp_path / "drop")
    (tmp_path / "drop").mkdir()
    app = create_app(settings, store=store)
    caller = Caller()
    caller.principal = system_client(scope="system/*.cruds")
    app.dependency_overrides[get_principal] = caller
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        client.caller = caller  # type: ignore[attr-defined]
        yield client


def test_import_of_an_uploaded_ndjson_body(store: Store, import_client: TestClient) -> None:
    body = ndjson({**factories.patient(), "id": "up1"}, b"garbage")
    response = import_client.post(
        "/$import", content=body, headers={"Content-Type": "application/fhir+ndjson"}
    )
    assert response.status_code == 202, response.text
    manifest = wait_done(import_client, response.headers["content-location"]).json()
    assert manifest["output"][0]["count"] == 1 and manifest["output"][0]["inputUrl"] == "upload"
    (error,) = manifest["error"]
    text = import_client.get(error["url"]).text
    assert "line 2" in text
    assert _count(store, "Patient") == 1


def test_import_of_local_files_named_in_parameters(
    store: Store, import_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "drop" / "p.ndjson").write_bytes(ndjson({**factories.patient(), "id": "f1"}))
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
            {
                "name": "input",
                "part": [
                    {"name": "type", "valueCode": "Patient"},
                    {"name": "url", "valueUrl": f"file://{tmp_path}/drop/p.ndjson"},
                ],
            },
        ],
    }
    response = import_client.post("/$import", json=params)
    assert response.status_code == 202, response.text
    manifest = wait_done(import_client, response.headers["content-location"]).json()
    assert manifest["output"][0]["count"] == 1
    assert _count(store, "Patient") == 1


def test_import_refuses_files_outside_the_allowed_directory(
    import_client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "secret.ndjson").write_bytes(ndjson(factories.patient()))
    for url in (f"file://{tmp_path}/secret.ndjson", f"{tmp_path}/drop/../secret.ndjson", "drop/p.ndjson"):
        params = {
            "resourceType": "Parameters",
            "parameter": [{"name": "input", "part": [{"name": "url", "valueUrl": url}]}],
        }
        response = import_client.post("/$import", json=params)
        assert response.status_code == 400, url


def test_import_needs_write_scopes(import_client: TestClient) -> None:
    from tests.bulk_support import system_client

    import_client.caller.principal = system_client(scope="system/*.rs")  # type: ignore[attr-defined]
    response = import_client.post(
        "/$import", content=b"{}\n", headers={"Content-Type": "application/fhir+ndjson"}
    )
    assert response.status_code == 403
    import_client.caller.principal = None  # type: ignore[attr-defined]
    assert (
        import_client.post(
            "/$import", content=b"{}\n", headers={"Content-Type": "application/fhir+ndjson"}
        ).status_code
        == 401
    )


def test_settings_without_an_import_directory_refuse_file_inputs(store: Store, tmp_path: Path) -> None:
    from fhir_server.jobs.import_ import inputs_from_parameters

    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "input", "part": [{"name": "url", "valueUrl": "file:///tmp/x"}]}],
    }
    from fhir_server.errors import Invalid

    with pytest.raises(Invalid, match="FHIR_BULK_IMPORT_DIR"):
        inputs_from_parameters(params, None)


@pytest.mark.postgres
def test_ids_of_a_type_new_to_the_statistics_are_looked_up_by_the_unique_index(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a load of Patients, statistics say there are no Observations; once an import has written
    ANALYZE_AFTER of them, the per-batch id lookup probes uq_resource_type_id with each id instead of
    scanning every Observation and filtering by id (which made each batch slower as the type grew)."""
    monkeypatch.setattr(import_, "ANALYZE_AFTER", 300)
    bulk_write.write(store, [{**factories.patient(), "id": f"p{i}"} for i in range(2000)])
    planner_statistics.analyze(store, ("resource",))
    # What matters is the statistics while the import runs, not the refresh at its end.
    monkeypatch.setattr(planner_statistics, "refresh", lambda *_: [])
    source = tmp_path / "o.ndjson"
    source.write_bytes(ndjson(*({**factories.observation("p1"), "id": f"o{i}"} for i in range(1200))))
    tally, errors = _load(store, source)
    assert (tally.created, errors) == (1200, [])
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        plan = "\n".join(
            row[0] for row in raw.execute("EXPLAIN " + bulk_write._PG_CURRENT, (["o1", "o2"], "Observation"))
        )
    # One probe per id: res_id is in the index condition, not a filter over every Observation.
    assert "uq_resource_type_id" in plan and "res_id)::text = k.id))" in plan and "Filter" not in plan, plan


def test_batches_committed_without_waiting_for_the_flush_leave_the_connection_as_it_was(
    store: Store,
) -> None:
    """`durable=False` is SET LOCAL: the pooled connection's next transaction commits synchronously."""
    assert bulk_write.write(store, [{**factories.patient(), "id": "p1"}], durable=False) == ["created"]
    bulk_write.sync(store)
    with store.read() as tx:
        assert tx.current("Patient", "p1") is not None
    if store.sqlite:
        return
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
