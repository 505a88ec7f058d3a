"""An export is a snapshot at its transactionTime (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status).

Nothing written after the snapshot appears; nothing current at it is missing; only the version
current at the snapshot is exported; `_since` selects changes after it and lists deletions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.jobs import worker
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.bulk_support import (
    BASE,
    Caller,
    export,
    kick_off,
    lines,
    put,
    remove,
    settings_for,
    update,
    wait_done,
)


class HeldQueue:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


@pytest.fixture
def held(store: Store, tmp_path: Path) -> tuple[TestClient, HeldQueue, Settings]:
    settings = settings_for(tmp_path)
    app = create_app(settings, store=store)
    app.dependency_overrides[get_principal] = Caller()
    queue = HeldQueue()
    app.state.job_queue = queue
    return TestClient(app, base_url=BASE, raise_server_exceptions=False), queue, settings


def _by_id(client: TestClient, manifest: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in lines(client, manifest).get(rtype, [])}


def test_writes_after_the_transaction_time_are_not_exported(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """Kick off, then create, update and delete: the export shows the data as it was at the kick-off
    (@152, @153, @154, @202)."""
    client, queue, settings = held
    kept, changed, deleted = put(
        store, factories.patient("Kept"), factories.patient("Before"), factories.patient("Gone")
    )
    update(store, "Patient", changed, name=[{"family": "Before2"}])  # version 2, before the snapshot
    with client:
        url = kick_off(client, params={"_type": "Patient"})
        put(store, factories.patient("Later"))
        update(store, "Patient", changed, name=[{"family": "After"}])
        update(store, "Patient", changed, name=[{"family": "After again"}])
        remove(store, "Patient", deleted)
        for job_id in queue.submitted:
            worker.run(store, settings, job_id)
        manifest = wait_done(client, url).json()
        patients = _by_id(client, manifest, "Patient")
    assert set(patients) == {kept, changed, deleted}
    assert patients[changed]["name"] == [{"family": "Before2"}]
    assert patients[changed]["meta"]["versionId"] == "2"
    assert patients[deleted]["name"][0]["family"] == "Gone"


def _export_during(
    store: Store, held: tuple[TestClient, HeldQueue, Settings], path: str, params: dict[str, str], writes: Any
) -> dict[str, dict[str, Any]]:
    """Kick off an export, run `writes()` after its transactionTime, then run it: Observations by id."""
    client, queue, settings = held
    with client:
        url = kick_off(client, path, params=params)
        writes()
        for job_id in queue.submitted:
            worker.run(store, settings, job_id)
        manifest = wait_done(client, url).json()
        return _by_id(client, manifest, "Observation")


def test_compartment_membership_is_that_of_the_transaction_time(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """A Patient export holds what was in the compartment at transactionTime: an Observation deleted
    or taken out of every compartment afterwards is exported as it was; one put in afterwards is not."""
    (alice,) = put(store, factories.patient("Alice"))
    unlinked = factories.observation(alice, value=3)
    del unlinked["subject"]
    deleted, moved_out, moved_in, kept = put(
        store,
        factories.observation(alice, value=1),
        factories.observation(alice, value=2),
        unlinked,
        factories.observation(alice, value=4),
    )

    def writes() -> None:
        remove(store, "Observation", deleted)
        with store.write() as tx:
            prev = tx.current("Observation", moved_out)
            assert prev is not None
            tx.update(prev, {k: v for k, v in prev.resource().items() if k != "subject"})
        update(store, "Observation", moved_in, subject={"reference": f"Patient/{alice}"})

    exported = _export_during(store, held, "Patient/$export", {"_type": "Observation"}, writes)
    assert set(exported) == {deleted, moved_out, kept}
    assert exported[moved_out]["subject"] == {"reference": f"Patient/{alice}"}


def test_a_group_export_covers_the_members_of_the_transaction_time(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """The Group's members at transactionTime: one removed afterwards is exported, one added is not."""
    alice, bob = put(store, factories.patient("Alice"), factories.patient("Bob"))
    put(
        store,
        {
            "resourceType": "Group",
            "id": "g",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{alice}"}}],
        },
    )
    of_alice, _of_bob = put(store, factories.observation(alice), factories.observation(bob))

    def writes() -> None:
        update(store, "Group", "g", member=[{"entity": {"reference": f"Patient/{bob}"}}])

    exported = _export_during(store, held, "Group/g/$export", {"_type": "Observation"}, writes)
    assert set(exported) == {of_alice}


def test_provenance_follows_its_targets_as_they_were_at_the_transaction_time(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """Patient export: the Provenance of a compartment resource deleted afterwards is exported; the
    Provenance of a resource put into the compartment afterwards is not."""
    (alice,) = put(store, factories.patient("Alice"))
    unlinked = factories.observation(alice)
    del unlinked["subject"]
    doomed, joins_later = put(store, factories.observation(alice), unlinked)

    def provenance(target: str) -> dict[str, Any]:
        return {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{target}"}],
            "recorded": "2024-01-01T00:00:00Z",
            "agent": [{"who": {"display": "bridge"}}],
        }

    of_doomed, of_joiner = put(store, provenance(doomed), provenance(joins_later))

    def writes() -> None:
        remove(store, "Observation", doomed)
        update(store, "Observation", joins_later, subject={"reference": f"Patient/{alice}"})

    client, queue, settings = held
    with client:
        url = kick_off(client, "Patient/$export", params={"_type": "Observation,Provenance"})
        writes()
        for job_id in queue.submitted:
            worker.run(store, settings, job_id)
        manifest = wait_done(client, url).json()
        provenance_ids = set(_by_id(client, manifest, "Provenance"))
    assert provenance_ids == {of_doomed}, (of_doomed, of_joiner)


def test_type_filters_match_the_values_of_the_transaction_time(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """`_typeFilter` selects by the values each resource had at transactionTime, not by later ones."""
    (patient,) = put(store, factories.patient("Filter"))
    was_final, becomes_final = put(
        store,
        {**factories.observation(patient), "status": "final"},
        {**factories.observation(patient), "status": "preliminary"},
    )

    def writes() -> None:
        update(store, "Observation", was_final, status="amended")
        update(store, "Observation", becomes_final, status="final")

    params = {"_type": "Observation", "_typeFilter": "Observation?status=final"}
    exported = _export_during(store, held, "$export", params, writes)
    assert set(exported) == {was_final}
    assert exported[was_final]["status"] == "final"


def test_only_current_versions_are_exported(
    store: Store, held: tuple[TestClient, HeldQueue, Settings]
) -> None:
    """Each resource once, at its latest version (@202)."""
    client, _, _ = held
    (pid,) = put(store, factories.patient("V1"))
    for family in ("V2", "V3"):
        update(store, "Patient", pid, name=[{"family": family}])
    client.app.state.job_queue = None  # type: ignore[attr-defined]  # run jobs for real
    with client:
        (patient,) = lines(client, export(client, params={"_type": "Patient"}))["Patient"]
    assert patient["meta"]["versionId"] == "3"
    assert patient["name"] == [{"family": "V3"}]


def test_since_exports_changes_after_it_and_lists_deletions(store: Store, bulk_client: TestClient) -> None:
    """`_since`: resources changed after it only; those deleted after it are DELETE entries of
    transaction Bundles in `deleted`, never in `output` (@53, @59, @179-@190)."""
    old, gone_before = put(store, factories.patient("Old"), factories.patient("GoneBefore"))
    remove(store, "Patient", gone_before)
    manifest = export(bulk_client, params={"_type": "Patient"})
    since = manifest["transactionTime"]
    (new,) = put(store, factories.patient("New"))
    (doomed,) = put(store, factories.patient("Doomed"))
    remove(store, "Patient", doomed)
    update(store, "Patient", old, name=[{"family": "Renamed"}])
    changes = export(bulk_client, params={"_type": "Patient", "_since": since})
    assert set(_by_id(bulk_client, changes, "Patient")) == {new, old}
    bundles = lines(bulk_client, changes, "deleted")["Bundle"]
    assert [b["type"] for b in bundles] == ["transaction"]
    assert bundles[0]["entry"] == [{"request": {"method": "DELETE", "url": f"Patient/{doomed}"}}]


@pytest.mark.parametrize("path", ["Patient/$export", "Group/g/$export"])
def test_deletions_in_the_compartment_are_listed_at_patient_and_group_level(
    store: Store, bulk_client: TestClient, path: str
) -> None:
    """A deleted resource has no index rows: whether it was in the compartment is decided by the version
    its deletion ended, so a member's deleted Observation is listed in `deleted` (@179-@190) and an
    outsider's is not (Group export)."""
    alice, bob = put(store, factories.patient("Alice"), factories.patient("Bob"))
    group = {"resourceType": "Group", "id": "g", "type": "person", "actual": True}
    put(store, {**group, "member": [{"entity": {"reference": f"Patient/{alice}"}}]})
    of_alice, of_bob = put(store, factories.observation(alice), factories.observation(bob))
    since = export(bulk_client, path, params={"_type": "Observation"})["transactionTime"]
    remove(store, "Observation", of_alice)
    remove(store, "Observation", of_bob)
    changes = export(bulk_client, path, params={"_type": "Observation", "_since": since})
    deleted = [
        e["request"]["url"] for b in lines(bulk_client, changes, "deleted")["Bundle"] for e in b["entry"]
    ]
    expected = {f"Observation/{of_alice}"} | (
        {f"Observation/{of_bob}"} if path.startswith("Patient") else set()
    )
    assert set(deleted) == expected


def test_since_in_the_future_exports_nothing(store: Store, bulk_client: TestClient) -> None:
    """A `_since` after every change selects nothing (@59)."""
    put(store, factories.patient())
    manifest = export(bulk_client, params={"_since": "2999-12-31T23:59:59+14:00"})
    assert manifest["output"] == [] and manifest["deleted"] == []


@pytest.mark.parametrize("path", ["$export", "Patient/$export", "Group/g/$export"])
def test_since_applies_at_every_level(store: Store, bulk_client: TestClient, path: str) -> None:
    """`_since` is supported by system, Patient and Group exports (@53, @59, @234, @254)."""
    (pid,) = put(store, factories.patient("A"))
    (before,) = put(store, factories.observation(pid))
    group = {
        "resourceType": "Group",
        "id": "g",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{pid}"}}],
    }
    put(store, group)
    since = export(bulk_client, path, params={"_type": "Observation"})["transactionTime"]
    (after,) = put(store, factories.observation(pid, value=99))
    changes = export(bulk_client, path, params={"_type": "Observation", "_since": since})
    assert set(_by_id(bulk_client, changes, "Observation")) == {after} != {before}
