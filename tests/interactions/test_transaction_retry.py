"""A transaction rolled back by contention runs again from the Bundle the client sent
(https://hl7.org/fhir/R4/http.html#trules), not from what the first attempt rewrote in place."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.interactions import transaction as transaction_module
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store.sql import Store, Tx
from tests import factories
from tests.conftest import BASE
from tests.store.test_contention import _collide

pytestmark = pytest.mark.rolled_back


def test_a_retried_transaction_resolves_its_urn_references_to_the_resources_it_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = transaction_module._perform_all
    attempts: list[int] = []

    def first_attempt_collides(ctx: Context, tx: Tx, requests: Any) -> Any:
        attempts.append(1)
        out = real(ctx, tx, requests)
        if len(attempts) == 1:
            _collide(store, tx)
        return out

    monkeypatch.setattr(transaction_module, "_perform_all", first_attempt_collides)
    patient_url = "urn:uuid:0b7f2f1e-1111-4c6a-9d9e-000000000001"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": patient_url},
    }
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": factories.patient("Retry"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    ctx = Context(store=store, settings=Settings(base_url=BASE))
    response = transaction_module.transaction(ctx, body)

    assert len(attempts) == 2
    patient_id = response["entry"][0]["response"]["location"].split("/")[1]
    observation_id = response["entry"][1]["response"]["location"].split("/")[1]
    with store.read() as tx:
        assert tx.count_history(res_type="Patient") == 1
        assert tx.count_history(res_type="Observation") == 1
        kept = tx.current("Observation", observation_id)
    assert kept is not None
    assert kept.resource()["subject"]["reference"] == f"Patient/{patient_id}"
