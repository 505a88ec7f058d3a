"""Self-contained transaction batches of conditional creates (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.bundle import (
    FULL_URL_NAMESPACE,
    BatchWriter,
    Entry,
    conditional_create,
    full_url_for,
    transaction,
)
from ingest.device import DeviceInfo
from ingest.observation import Sample, entry
from ingest.provenance import PROVENANCE_TAG_SYSTEM, ProvenanceSpec

DEVICES = [DeviceInfo("test", f"Device {i}") for i in range(3)]


def _entries(n: int) -> list[tuple[Entry, Entry]]:
    out = []
    for i in range(n):
        dev = DEVICES[i % 3]
        e = entry(
            Sample("steps", f"2024-01-{1 + i % 28:02d}", i, device=dev), source="t", patient_ref="Patient/1"
        )
        out.append((e, dev.entry()))
    return out


@given(n=st.integers(min_value=1, max_value=60), size=st.integers(min_value=3, max_value=12))
def test_every_batch_is_self_contained_and_within_its_size(n: int, size: int) -> None:
    writer = BatchWriter(size, ProvenanceSpec("t", recorded="2024-01-01T00:00:00Z"))
    for e, dev in _entries(n):
        assert writer.add(e, [dev])
    bundles = writer.close()
    seen = 0
    for b in bundles:
        assert b["type"] == "transaction"
        assert len(b["entry"]) <= size
        urls = {x["fullUrl"] for x in b["entry"]}
        assert len(urls) == len(b["entry"])
        for x in b["entry"]:
            res = x["resource"]
            if res["resourceType"] == "Observation":
                seen += 1
                assert res["device"]["reference"] in urls
        prov = b["entry"][-1]["resource"]
        assert prov["resourceType"] == "Provenance"
        targets = [t["reference"] for t in prov["target"]]
        assert targets == [x["fullUrl"] for x in b["entry"] if x["resource"]["resourceType"] == "Observation"]
        devices = [x["fullUrl"] for x in b["entry"] if x["resource"]["resourceType"] == "Device"]
        assert sorted(a["who"].get("reference", "") for a in prov["agent"][1:]) == sorted(devices)
    assert seen == n


def test_duplicate_in_a_batch_is_refused() -> None:
    writer = BatchWriter(10)
    e, dev = _entries(1)[0]
    assert writer.add(e, [dev])
    assert not writer.add(e, [dev])
    [bundle] = writer.close()
    assert len(bundle["entry"]) == 2


def test_provenance_is_a_conditional_create_on_a_tag_that_depends_on_its_targets() -> None:
    spec = ProvenanceSpec("t", file="x.csv", recorded="2024-01-01T00:00:00Z")
    (a, _), (b, _) = _entries(2)
    p1, p2, p3 = spec([a], []), spec([a], []), spec([a, b], [])
    assert p1.if_none_exist == p2.if_none_exist
    assert p1.if_none_exist != p3.if_none_exist
    assert p1.if_none_exist.startswith(f"_tag={PROVENANCE_TAG_SYSTEM}|")  # type: ignore[union-attr]
    assert p1.resource["entity"] == [{"role": "source", "what": {"display": "x.csv"}}]


def test_supporting_entries_are_copied_per_batch() -> None:
    writer = BatchWriter(3)
    for e, dev in _entries(7)[::3]:
        writer.add(e, [dev])
    b1, b2 = writer.close()
    b1["entry"][0]["resource"]["status"] = "changed"
    assert b2["entry"][0]["resource"]["status"] == "active"


def test_full_url_is_the_rfc_4122_uuid5_of_the_identifier() -> None:
    assert full_url_for("s", "v") == f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, 's|v')}"


def test_conditional_create_entry_shape() -> None:
    e = conditional_create({"resourceType": "Device"}, "sys", "val")
    assert transaction([e]) == {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url_for("sys", "val"),
                "resource": {"resourceType": "Device"},
                "request": {"method": "POST", "url": "Device", "ifNoneExist": "identifier=sys|val"},
            }
        ],
    }


def test_batch_size_below_three_is_refused() -> None:
    with pytest.raises(ValueError):
        BatchWriter(2)
