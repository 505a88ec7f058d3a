"""Batched writes of bulk import: indexed, versioned, idempotent by content (https://hl7.org/fhir/R4/http.html#update)."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.interactions.context import Context
from fhir_server.interactions.search import search
from fhir_server.settings import Settings
from fhir_server.store import bulk_write
from fhir_server.store.sql import Store
from tests import factories

pytestmark = pytest.mark.rolled_back


def _search(store: Store, rtype: str, **params: str) -> list[str]:
    ctx = Context(store=store, settings=Settings(base_url="http://testserver"))
    with store.read() as tx:
        bundle = orjson.loads(orjson.dumps(search(ctx, tx, rtype, list(params.items()))))
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


def test_new_ids_are_created_and_indexed(store: Store) -> None:
    patient = {**factories.patient("Batch"), "id": "p1"}
    obs = [{**factories.observation("p1", value=i), "id": f"o{i}"} for i in range(3)]
    assert bulk_write.write(store, [patient, *obs]) == ["created"] * 4
    assert _search(store, "Patient", family="batch") == ["p1"]
    assert _search(store, "Observation", subject="Patient/p1") == ["o0", "o1", "o2"]
    with store.read() as tx:
        stored = tx.current("Observation", "o1")
        assert stored is not None and stored.version == 1
        assert tx.count_history(res_type="Observation", res_id="o1") == 1


def test_the_same_content_again_creates_no_version(store: Store) -> None:
    patient = {**factories.patient("Same"), "id": "p1"}
    bulk_write.write(store, [patient])
    with store.read() as tx:
        stored = tx.current("Patient", "p1")
    assert stored is not None
    exported = stored.resource()  # as a previous export wrote it: meta.versionId / lastUpdated set
    assert bulk_write.write(store, [patient]) == ["unchanged"]
    assert bulk_write.write(store, [exported]) == ["unchanged"]
    with store.read() as tx:
        assert tx.count_history(res_type="Patient", res_id="p1") == 1


def test_an_existing_id_with_new_content_becomes_a_new_version(store: Store) -> None:
    bulk_write.write(store, [{**factories.patient("Old"), "id": "p1"}])
    assert bulk_write.write(store, [{**factories.patient("New"), "id": "p1"}]) == ["updated"]
    assert _search(store, "Patient", family="new") == ["p1"]
    assert _search(store, "Patient", family="old") == []
    with store.read() as tx:
        current = tx.current("Patient", "p1")
        assert current is not None and current.version == 2
        first = tx.version("Patient", "p1", 1)
        assert first is not None and first.resource()["name"][0]["family"] == "Old"


def test_a_deleted_resource_is_brought_back_by_an_import(store: Store) -> None:
    bulk_write.write(store, [{**factories.patient("Back"), "id": "p1"}])
    with store.write() as tx:
        prev = tx.current("Patient", "p1")
        assert prev is not None
        tx.delete(prev)
    assert bulk_write.write(store, [{**factories.patient("Back"), "id": "p1"}]) == ["updated"]
    assert _search(store, "Patient", family="back") == ["p1"]


def test_references_are_not_checked(store: Store) -> None:
    """Bulk loads arrive in any order: a reference to a resource not (yet) there is stored."""
    assert bulk_write.write(store, [{**factories.observation("not-yet"), "id": "o1"}]) == ["created"]


def test_a_batch_holds_each_resource_once(store: Store) -> None:
    patient = {**factories.patient(), "id": "p1"}
    with pytest.raises(ValueError):
        bulk_write.write(store, [patient, patient])


def test_a_missing_reference_is_named_by_its_path_among_others(store: Store) -> None:
    """The store notes references without their paths (store/sql.py `_RefCheck`) and finds the path
    of one that fails from the stored resource: the second missing target of three references."""
    from fhir_server.errors import Unprocessable

    with store.write() as tx:
        tx.create({**factories.patient("Here"), "id": "here"}, "here")
    obs = factories.observation("here")
    obs["performer"] = [{"reference": "Patient/here"}, {"reference": "Practitioner/ghost"}]
    with pytest.raises(Unprocessable) as failed, store.write() as tx:
        tx.create(obs)
    issues = failed.value.issues
    assert [(i.message, i.expression) for i in issues] == [
        (
            "Reference to Practitioner/ghost, which does not exist on this server",
            ("Observation.performer[1].reference",),
        )
    ]


def test_missing_references_are_named_by_their_paths_when_the_text_orders_them_otherwise(
    store: Store,
) -> None:
    """A write's references are noted in the order of its JSON text, where an element's members
    come before its own "reference" when written first; each missing one is still named by its
    own path, a target named twice by both."""
    from fhir_server.errors import Unprocessable

    with store.write() as tx:
        tx.create({**factories.patient("Here"), "id": "here"}, "here")
    obs = factories.observation("here")
    ghost = {"reference": "Practitioner/ghost"}
    obs["performer"] = [
        {"extension": [{"url": "http://example.org/x", "valueReference": ghost}], "reference": "Device/none"},
        ghost,
    ]
    with pytest.raises(Unprocessable) as failed, store.write() as tx:
        tx.create(obs)
    found = sorted((i.message, i.expression) for i in failed.value.issues)
    assert found == [
        (
            "Reference to Device/none, which does not exist on this server",
            ("Observation.performer[0].reference",),
        ),
        (
            "Reference to Practitioner/ghost, which does not exist on this server",
            ("Observation.performer[0].extension[0].valueReference.reference",),
        ),
        (
            "Reference to Practitioner/ghost, which does not exist on this server",
            ("Observation.performer[1].reference",),
        ),
    ]


def test_only_short_references_are_remembered_so_the_table_stays_small(store: Store) -> None:
    """Writes remember which local target a reference names (a chunk names the same few), but not
    a long reference: 4,096 entries of a body's megabyte-long references would hold gigabytes."""
    from fhir_server.store import sql

    sql._remembered_target.cache_clear()
    with store.write() as tx:
        tx.create({**factories.patient("Here"), "id": "here"}, "here")
        tx.create(factories.observation("here"))
        tx.create(
            {**factories.observation("here"), "performer": [{"reference": "Patient/here?" + "x" * 300}]}
        )
    assert sql._remembered_target.cache_info().currsize == 1  # Patient/here, not the long one
