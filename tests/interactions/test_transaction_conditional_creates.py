"""A transaction's conditional creates resolved together keep the meaning of one-by-one conditional
creates (https://hl7.org/fhir/R4/http.html#ccreate, #trules): one match 200, none 201, several 412,
inside and across Bundles, with urn:uuid references, under concurrency, within the caller's grants;
on both databases. The batched lookup (interactions/conditional_creates.py) is checked against the
one-by-one search (`conditional.matches`) as its oracle.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.errors import FhirError, PreconditionFailed
from fhir_server.interactions import conditional, conditional_creates, search
from fhir_server.interactions.bundle_entry import parse_entry
from fhir_server.interactions.context import Context
from fhir_server.interactions.transaction import transaction
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE

FHIR = {"Content-Type": "application/fhir+json"}
SYS = "https://bridge.example.org/sample"


def _obs(value: str, system: str | None = SYS, **extra: Any) -> dict[str, Any]:
    ident: dict[str, Any] = {"value": value}
    if system is not None:
        ident["system"] = system
    return factories.observation(identifier=[ident], **extra)


def _cond(resource: dict[str, Any], criteria: str, full_url: str | None = None) -> dict[str, Any]:
    return factories.post_entry(resource, full_url or f"urn:uuid:{uuid.uuid4()}", ifNoneExist=criteria)


def _post(client: TestClient, *entries: dict[str, Any]) -> Any:
    return client.post("/", json=factories.transaction(*entries), headers=FHIR)


def _statuses(response: Any) -> list[str]:
    return [e["response"]["status"] for e in response.json()["entry"]]


def _ids(response: Any) -> list[str]:
    return [e["response"]["location"].split("/")[1] for e in response.json()["entry"]]


def _count(client: TestClient, criteria: str) -> int:
    body = client.get(f"/Observation?{criteria}&_total=accurate").json()
    return int(body["total"])


def _ctx(store: Store) -> Context:
    return Context(store=store, settings=Settings(base_url=BASE))


def test_none_one_and_several_matches_across_bundles(client: TestClient) -> None:
    first = _post(client, factories.post_entry(_obs("one")))
    assert first.status_code == 200, first.text
    (one_id,) = _ids(first)
    for _ in range(2):
        assert _post(client, factories.post_entry(_obs("twice"))).status_code == 200

    r = _post(
        client, _cond(_obs("none"), f"identifier={SYS}|none"), _cond(_obs("one"), f"identifier={SYS}|one")
    )
    assert r.status_code == 200, r.text
    assert _statuses(r) == ["201 Created", "200 OK"]
    new_id = _ids(r)[0]
    assert _ids(r)[1] == one_id

    again = _post(
        client, _cond(_obs("none"), f"identifier={SYS}|none"), _cond(_obs("one"), f"identifier={SYS}|one")
    )
    assert _statuses(again) == ["200 OK", "200 OK"]
    assert _ids(again) == [new_id, one_id]

    several = _post(
        client,
        _cond(_obs("fresh"), f"identifier={SYS}|fresh"),
        _cond(_obs("twice"), f"identifier={SYS}|twice"),
    )
    assert several.status_code == 412, several.text
    assert "Bundle.entry[1].request.ifNoneExist" in several.text
    assert _count(client, f"identifier={SYS}|fresh") == 0  # nothing of the refused Bundle was kept


def test_two_entries_with_the_same_criteria_resolve_to_one_resource(client: TestClient) -> None:
    """Fails on the old code: the second entry's fullUrl was mapped to an id nothing was created under."""
    first_url, second_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    derived = _obs("derived", derivedFrom=[{"reference": second_url}])
    r = _post(
        client,
        _cond(_obs("dup"), f"identifier={SYS}|dup", first_url),
        _cond(_obs("dup", valueQuantity={"value": 1}), f"identifier={SYS}|dup", second_url),
        factories.post_entry(derived),
    )
    assert r.status_code == 200, r.text
    assert _statuses(r)[:2] == ["201 Created", "200 OK"]
    ids = _ids(r)
    assert ids[0] == ids[1]
    assert _count(client, f"identifier={SYS}|dup") == 1
    stored = client.get(f"/Observation/{ids[2]}").json()
    assert stored["derivedFrom"] == [{"reference": f"Observation/{ids[0]}"}]


def test_an_earlier_plain_create_of_the_bundle_is_matched(client: TestClient) -> None:
    r = _post(client, factories.post_entry(_obs("plain")), _cond(_obs("plain"), f"identifier={SYS}|plain"))
    assert r.status_code == 200, r.text
    assert _statuses(r) == ["201 Created", "200 OK"]
    assert _ids(r)[0] == _ids(r)[1]


def test_several_matches_inside_the_bundle_or_across_it_are_412(client: TestClient) -> None:
    inside = _post(
        client,
        factories.post_entry(_obs("in")),
        factories.post_entry(_obs("in")),
        _cond(_obs("in"), f"identifier={SYS}|in"),
    )
    assert inside.status_code == 412, inside.text
    assert _post(client, factories.post_entry(_obs("across"))).status_code == 200
    across = _post(
        client, factories.post_entry(_obs("across")), _cond(_obs("across"), f"identifier={SYS}|across")
    )
    assert across.status_code == 412, across.text
    assert _count(client, f"identifier={SYS}|in") == 0
    assert _count(client, f"identifier={SYS}|across") == 1


def test_references_to_conditional_creates_point_at_what_they_resolved_to(client: TestClient) -> None:
    patient = {**factories.patient(), "identifier": [{"system": "urn:mrn", "value": "p-1"}]}
    patient_url = f"urn:uuid:{uuid.uuid4()}"

    def bundle(tag: str) -> list[dict[str, Any]]:
        obs = _obs(tag, subject={"reference": patient_url})
        return [
            _cond(obs, f"identifier={SYS}|{tag}"),
            _cond(patient, "identifier=urn:mrn|p-1", patient_url),
        ]

    new = _post(client, *bundle("ref-1"))
    assert new.status_code == 200, new.text
    assert _statuses(new) == ["201 Created", "201 Created"]
    obs_id, patient_id = _ids(new)
    existing = _post(
        client, *bundle("ref-2")
    )  # the patient exists now: 200, and the new Observation refers to it
    assert _statuses(existing) == ["201 Created", "200 OK"]
    assert _ids(existing)[1] == patient_id
    for oid in (obs_id, _ids(existing)[0]):
        assert client.get(f"/Observation/{oid}").json()["subject"] == {"reference": f"Patient/{patient_id}"}


def test_the_same_bundle_raced_by_twenty_clients_creates_each_resource_once(store: Store) -> None:
    ctx = _ctx(store)
    n = 20
    bundle = factories.transaction(
        *(_cond(_obs(f"race-{i}"), f"identifier={SYS}|race-{i}") for i in range(30))
    )
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = transaction(ctx, orjson_copy(bundle))
        except FhirError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, FhirError)], results
    ids = {tuple(e["response"]["location"].split("/")[1] for e in r["entry"]) for r in results}
    assert len(ids) == 1  # every client got the same 30 resources
    created = sum(e["response"]["status"] == "201 Created" for r in results for e in r["entry"])
    assert created == 30
    with store.read() as tx:
        assert len(tx.history(res_type="Observation", limit=1000)) == 30


def orjson_copy(value: Any) -> Any:
    import orjson

    return orjson.loads(orjson.dumps(value))


# ---------------- the batched lookup against the one-by-one search ----------------

SYSTEMS = (None, "urn:a", "urn:b")
VALUES = ("1", "2", "x,y", "L" * 300)


def _criteria() -> list[str]:
    out = []
    for value in VALUES:
        escaped = value.replace(",", "\\,")
        out.append(f"identifier={escaped}")
        out.append(f"identifier=|{escaped}")
        out += [f"identifier={s}|{escaped}" for s in SYSTEMS if s]
    out += ["identifier=nothing", "identifier=urn:b|nothing", "identifier="]
    out += ["_tag=urn:t|a", "_tag=a", "_tag=urn:t|b", "_tag=urn:t|zz"]  # another token parameter
    out.append("identifier=urn:a|")  # a system alone: not the batched shape, searched one by one
    return out


@pytest.fixture
def varied(store: Store) -> Store:
    """Observations with identifiers in several systems (none, shared values, one deleted, one too long
    for the index), and a Patient with the same identifiers (another type)."""
    ctx = _ctx(store)
    with store.write() as tx:
        n = 0
        for system in SYSTEMS:
            for value in VALUES:
                for copies in range(1 + (n % 2)):
                    tx.create(_obs(value, system), f"o{n}-{copies}")
                n += 1
        tx.create({**factories.patient(), "identifier": [{"system": "urn:a", "value": "1"}]}, "pat")
        for n, code in enumerate(("a", "a", "b")):
            tx.create(_obs("t", meta={"tag": [{"system": "urn:t", "code": code}]}), f"tagged-{n}")
        gone = tx.create(_obs("2", "urn:b", status="amended"), "gone")
    with store.write() as tx:
        tx.delete(tx.current("Observation", gone.res_id))  # type: ignore[arg-type]
    assert ctx
    return store


def test_batched_lookup_finds_what_the_one_by_one_search_finds(varied: Store) -> None:
    ctx = _ctx(varied)
    criteria = _criteria()
    entries = [_cond(_obs("new"), c) for c in criteria]
    requests = [parse_entry(i, e, BASE) for i, e in enumerate(entries)]
    with varied.read() as tx:
        oracle = {
            c: sorted(s.res_id for s in conditional.matches(ctx, tx, "Observation", c, limit=100))
            for c in criteria
        }
    checked = 0
    for i, c in enumerate(criteria):
        with varied.write() as tx:
            try:
                resolved = conditional_creates.resolve(ctx, tx, [requests[i]])
            except PreconditionFailed:
                assert len(oracle[c]) > 1, c
                checked += 1
                continue
            if i not in resolved:
                assert c in ("identifier=urn:a|", "identifier="), c  # left to the one-by-one search
                continue
            got = resolved[i]
            expected = oracle[c]
            assert len(expected) <= 1, (c, expected)
            assert (got.existing.res_id if got.existing else None) == (expected[0] if expected else None), c
            checked += 1
    assert checked == len(criteria) - 2
    # all together in one Bundle (those one search finds at most one for): the same answers
    for param in ("identifier=", "_tag="):
        single = [
            r
            for r, c in zip(requests, criteria, strict=True)
            if len(oracle[c]) <= 1 and c.startswith(param) and c != "identifier="
        ]
        with varied.write() as tx:
            together = conditional_creates.resolve(ctx, tx, single)
        assert len(together) == len(single) > 1
        for req in single:
            got = together[req.index].existing
            expected = oracle[criteria[req.index]]
            assert (got.res_id if got else None) == (expected[0] if expected else None), criteria[req.index]
    mixed = [
        r for r, c in zip(requests, criteria, strict=True) if c in ("identifier=nothing", "_tag=urn:t|zz")
    ]
    with varied.write() as tx:  # two parameters on one type: left to the one-by-one search
        assert conditional_creates.resolve(ctx, tx, mixed) == {}
    assert any(len(v) > 1 for v in oracle.values()) and any(len(v) == 1 for v in oracle.values())
    assert any(not v for v in oracle.values())


def test_identifier_criteria_are_not_searched_entry_by_entry(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails on the old code, which planned and ran one search per conditional entry."""
    calls: list[str] = []
    real = search.match_pks

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "match_pks", counting)
    entries = [_cond(_obs(f"n{i}"), f"identifier={SYS}|n{i}") for i in range(50)]
    assert _post(client, *entries).status_code == 200
    assert _statuses(_post(client, *entries)) == ["200 OK"] * 50
    assert calls == []


# ---------------- within the caller's grants ----------------


@pytest.fixture
def two_patients(store: Store) -> None:
    with store.write() as tx:
        for who in ("A", "B"):
            tx.create(factories.patient(who), who)
            tx.create(_obs(f"own-{who}", subject={"reference": f"Patient/{who}"}), f"obs-{who}")


def _headers(smart_client: TestClient, scope: str, **context: Any) -> dict[str, str]:
    from tests.api.test_scope_enforcement import mint

    return {**mint(smart_client, scope, **context), **FHIR}


def _context(kind: str, who: str) -> dict[str, Any]:
    if kind == "patient":
        return {"patient": who}
    return {"kind": "user", "patient": who, "fhir_user": f"Patient/{who}"}


@pytest.mark.parametrize("kind", ["patient", "user"])  # two launches, or two users of one client
def test_a_patient_context_does_not_match_another_patients_resource(
    smart_client: TestClient, two_patients: None, kind: str
) -> None:
    for who, other in (("A", "B"), ("B", "A")):
        headers = _headers(smart_client, "patient/*.cruds", **_context(kind, who))
        mine = _obs(f"own-{who}", subject={"reference": f"Patient/{who}"})
        theirs = _obs(f"own-{other}", subject={"reference": f"Patient/{who}"})
        r = smart_client.post(
            "/",
            json=factories.transaction(
                _cond(mine, f"identifier={SYS}|own-{who}"), _cond(theirs, f"identifier={SYS}|own-{other}")
            ),
            headers=headers,
        )
        assert r.status_code == 200, r.text
        assert _statuses(r) == ["200 OK", "201 Created"]  # the other patient's match is invisible
        assert _ids(r)[0] == f"obs-{who}"
        # a single conditional create of the same caller now finds the one it created, and only it
        single = smart_client.post(
            "/Observation",
            json=theirs,
            headers={**headers, "If-None-Exist": f"identifier={SYS}|own-{other}"},
        )
        assert single.status_code == 200, single.text
        assert single.json()["id"] == _ids(r)[1]


def test_an_operator_matches_every_patients_resource(smart_client: TestClient, two_patients: None) -> None:
    r = smart_client.post(
        "/",
        json=factories.transaction(
            _cond(_obs("own-A"), f"identifier={SYS}|own-A"), _cond(_obs("own-B"), f"identifier={SYS}|own-B")
        ),
        headers=_headers(smart_client, "system/*.cruds", kind="system"),
    )
    assert r.status_code == 200, r.text
    assert _statuses(r) == ["200 OK", "200 OK"]
    assert _ids(r) == ["obs-A", "obs-B"]
