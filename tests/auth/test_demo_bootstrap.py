"""First-start demo accounts (fhir_server/auth/demo.py)."""

from __future__ import annotations

from fhir_server.auth import clients, users
from fhir_server.auth.demo import bootstrap_demo
from fhir_server.auth.login import LoginAttempt, log_in
from fhir_server.store.sql import Store


def test_an_empty_server_gets_demo_accounts_that_can_log_in(store: Store) -> None:
    printed: list[str] = []
    accounts = bootstrap_demo(store, "http://localhost:8080", out=printed.append)
    assert accounts is not None
    assert accounts.patient_password in printed[0] and accounts.client_id in printed[0]
    with store.read() as tx:
        client = clients.get(tx.conn, accounts.client_id)
        assert client is not None and client.client_type == "public"
        assert all("*" not in uri for uri in client.redirect_uris)
        assert tx.current("Patient", "demo-patient") is not None
        assert tx.current("Practitioner", "demo-practitioner") is not None
        assert {u.username for u in users.all_users(tx.conn)} == {"demo-patient", "demo-clinician"}
    user = log_in(store, LoginAttempt(accounts.patient_username, accounts.patient_password))
    assert user.fhir_user == "Patient/demo-patient"


def test_nothing_happens_when_there_are_users_or_clients(store: Store) -> None:
    with store.write() as tx:
        clients.register(tx.conn, "app", "public", redirect_uris=["https://a.example.org/cb"])
    printed: list[str] = []
    assert bootstrap_demo(store, "http://localhost:8080", out=printed.append) is None
    assert printed == []
