"""The index rows audit/event_index.py derives for an AuditEvent are exactly those search/index.py gives it.

The recorder writes AuditEvents with rows read from where balp.py put each value instead of evaluating
every AuditEvent search parameter's FHIRPath; this oracle checks the two agree, row for row, over
Hypothesis-generated request records (reads, searches, operations, failures, logins and tokens) and
over the per-patient write groups the change events give, so every AuditEvent search parameter means
what it means for any other resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.audit import access_events, balp, event_index
from fhir_server.audit.access import Access
from fhir_server.search.index import index_tuples
from fhir_server.store.outbox import WriteContext
from fhir_server.store.sql import _as_stored

BASE = "http://testserver"
ids = st.text("abcXYZ019-.", min_size=1, max_size=12)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)


@dataclass
class Caller:
    client_id: str | None
    subject: str | None
    fhir_user: str | None
    patient: str | None


callers = st.none() | st.builds(
    Caller,
    st.none() | words,
    st.none() | words,
    st.none()
    | st.sampled_from(["Practitioner", "Patient", "RelatedPerson", "Person"]).flatmap(
        lambda t: ids.map(lambda i: f"{t}/{i}")
    ),
    st.none() | ids,
)


def _resource(kind: str, rid: str, patient: str) -> bytes:
    resource: dict[str, Any] = {"resourceType": kind, "id": rid}
    if kind == "Observation":
        resource |= {"status": "final", "subject": {"reference": f"Patient/{patient}"}}
    elif kind == "Encounter":
        resource |= {"status": "finished", "subject": {"reference": f"Patient/{patient}"}}
    return orjson.dumps(resource)


contents = st.lists(
    st.builds(_resource, st.sampled_from(["Observation", "Encounter", "Patient", "Organization"]), ids, ids),
    max_size=6,
)
interactions = st.sampled_from(
    [*balp.ACTION, "auth", "metadata", "bulk-status", "admin", "health"]  # some audited as operations
)


@st.composite
def accesses(draw: st.DrawFn) -> Access:
    access = Access(
        method=draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])),
        interaction=draw(interactions),
        res_type=draw(st.sampled_from(["", "Observation", "Patient", "AuditEvent"])),
        path=draw(st.sampled_from(["", "Observation", "Patient/p1", "Observation/o1/$validate", "$export"])),
        request_id="r",
        started_us=draw(st.integers(0, 2**52)),
        caller=draw(callers),
        query=draw(st.none() | words),
        contents=draw(contents),
        consent=draw(st.lists(ids.map(lambda i: f"Consent/{i}"), max_size=2)),
        status=draw(st.sampled_from([200, 201, 204, 401, 403, 404, 409, 422, 500])),
    )
    access.ended_us = access.started_us + draw(st.integers(0, 10**7))
    if draw(st.booleans()) and draw(st.booleans()):
        access.event = draw(st.sampled_from(["login", "token", "refresh", "revoke", "register"]))
        access.event_failed = draw(st.booleans())
        access.event_detail = draw(st.none() | words)
        access.event_user = draw(st.none() | words)
        access.event_client = draw(st.none() | words)
    return access


def _assert_same_rows(event: dict[str, Any]) -> None:
    stored = _as_stored(event, event["id"], 1, 1_700_000_000_000_000)
    derived = event_index.rows(event)
    generic = index_tuples(stored)
    assert {k: sorted(map(repr, v)) for k, v in derived.items()} == {
        k: sorted(map(repr, v)) for k, v in generic.items()
    }


@settings(max_examples=300, deadline=None)
@given(accesses())
def test_the_rows_of_each_request_audit_event_are_the_generic_indexers(access: Access) -> None:
    for event in access_events.audit_events(access, BASE):
        _assert_same_rows(event)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["create", "update", "patch", "delete"]),
    st.builds(WriteContext, st.sampled_from(["rest", "transaction:b1", "import:j1"]), st.none() | words),
    st.none() | ids,
    st.lists(st.tuples(st.sampled_from(["Observation", "Patient", "Group"]), ids), min_size=1, max_size=5),
)
def test_the_rows_of_each_write_audit_event_are_the_generic_indexers(
    interaction: str, context: WriteContext, patient: str | None, written: list[tuple[str, str]]
) -> None:
    # the shape change_events.audit_events gives one (source, interaction, writer, patient) group
    entities = [balp.patient_entity(patient)] if patient else []
    entities += [balp.resource_entity(t, i) for t, i in written]
    event = balp.audit_event(
        type_=balp.REST,
        subtype=balp.restful_subtype(interaction),
        action=balp.ACTION[interaction],
        started_us=1,
        ended_us=2,
        status=201,
        who=balp.Who.of(context),
        base=BASE,
        entities=entities,
        description=f"{interaction} from {context.source}",
    )
    _assert_same_rows(event)
