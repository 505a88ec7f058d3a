"""First-start demo accounts, so a new server can be tried with a SMART app at once (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#register-app-with-ehr).

`bootstrap_demo()` does nothing unless the database has no users and no clients. Then it creates a
demo Patient and Practitioner, a user for each (random passwords), and a public client with exact
redirect URIs, and prints the credentials once (to the console, never to the log).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Table, func, select

from ..store.sql import Store
from . import clients, users
from .tables import auth_user, oauth_client

PATIENT_ID = "demo-patient"
PRACTITIONER_ID = "demo-practitioner"
CLIENT_ID = "demo-app"
REDIRECT_URIS = ("http://localhost:3000/callback", "http://127.0.0.1:3000/callback")


@dataclass(frozen=True)
class DemoAccounts:
    client_id: str
    redirect_uris: tuple[str, ...]
    patient_username: str
    patient_password: str
    clinician_username: str
    clinician_password: str


def bootstrap_demo(
    store: Store,
    fhir_base: str,
    *,
    redirect_uris: Sequence[str] = REDIRECT_URIS,
    out: Callable[[str], object] = print,
) -> DemoAccounts | None:
    """Create and print the demo accounts when there are no users and no clients; else None."""
    patient_password, clinician_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    with store.write() as tx:
        if _count(tx.conn, auth_user) or _count(tx.conn, oauth_client):
            return None
        if tx.current("Patient", PATIENT_ID) is None:
            tx.create(_patient(), PATIENT_ID)
        if tx.current("Practitioner", PRACTITIONER_ID) is None:
            tx.create(_practitioner(), PRACTITIONER_ID)
        users.add(tx.conn, "demo-patient", patient_password, fhir_user=f"Patient/{PATIENT_ID}")
        users.add(tx.conn, "demo-clinician", clinician_password, fhir_user=f"Practitioner/{PRACTITIONER_ID}")
        clients.register(tx.conn, CLIENT_ID, "public", redirect_uris=redirect_uris, name="Demo SMART app")
    accounts = DemoAccounts(
        CLIENT_ID,
        tuple(redirect_uris),
        "demo-patient",
        patient_password,
        "demo-clinician",
        clinician_password,
    )
    out(
        "Demo accounts created (shown only now):\n"
        f"  FHIR base URL:      {fhir_base}\n"
        f"  SMART client_id:    {CLIENT_ID} (public, PKCE S256), redirect URIs: {', '.join(redirect_uris)}\n"
        f"  patient login:      demo-patient / {patient_password}  (Patient/{PATIENT_ID})\n"
        f"  clinician login:    demo-clinician / {clinician_password}  (Practitioner/{PRACTITIONER_ID})"
    )
    return accounts


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _patient() -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "active": True,
        "name": [{"use": "official", "family": "Demo", "given": ["Dana"]}],
        "gender": "female",
        "birthDate": "1980-01-01",
    }


def _practitioner() -> dict[str, object]:
    return {
        "resourceType": "Practitioner",
        "active": True,
        "name": [{"use": "official", "family": "Demo", "given": ["Casey"], "prefix": ["Dr."]}],
    }
