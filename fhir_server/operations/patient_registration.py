"""Patient self-registration: the account and its Patient resource, written together (docs/smart-on-fhir.md "Accounts").

Off unless the operator sets `FHIR_SELF_REGISTRATION` to `open` or `invite`. One write transaction
creates the Patient through the REST create interaction (validated, indexed, a change event the
audit trail records as "create from registration"), the user whose `fhirUser` is that Patient, and
spends the invite code. A taken username (any case) is refused without saying anything about the
account that holds it; a wrong invite code counts as a failed login of the client's address, and
registrations from one address are throttled (`REGISTRATIONS`: a few an hour go through at once,
then each waits a growing delay), so neither codes nor accounts can be made in bulk.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from ..auth import invitations, login_throttle, opaque_token, passwords, users
from ..auth.login_throttle import Backoff, ThrottleKey
from ..auth.registration_form import Registration
from ..auth.users import User
from ..errors import FhirError
from ..interactions.context import Context
from ..interactions.create import create
from ..settings import Settings
from ..store.outbox import WriteContext
from ..store.sql import Store, Tx

MODES = ("off", "open", "invite")
SOURCE = "registration"
REGISTRATIONS = Backoff(free=10, base=60, cap=3600, forget=24 * 3600)


class RegistrationRefused(Exception):
    """Nothing was created; `field` names the form field at fault, `status` the page's status."""

    def __init__(self, field: str, message: str, status: int = 400, retry_after: int = 0) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Registered:
    user: User
    patient_id: str


def register(
    store: Store,
    settings: Settings,
    registration: Registration,
    *,
    address: str,
    clock: Callable[[], float] = time.time,
) -> Registered:
    """Create the user and their Patient, or `RegistrationRefused`."""
    mode = settings.self_registration
    if mode not in ("open", "invite"):
        raise RegistrationRefused("", "Registration is not open on this server.", 404)
    now = int(clock())
    keys = [k for k in login_throttle.keys("", address) if k.kind == "address"]
    made = ThrottleKey("registration", opaque_token.digest(f"registration:{address}"), REGISTRATIONS)
    with store.read() as tx:
        wait = login_throttle.wait_seconds(tx.conn, [*keys, made], now)
        taken = users.name_taken(tx.conn, registration.username)
        invite_ok = mode == "open" or invitations.usable(tx.conn, registration.invite, now=now)
    if wait > 0:
        message = f"Too many attempts. Please try again in {wait} second{'s' * (wait != 1)}."
        raise RegistrationRefused("", message, 429, wait)
    if not invite_ok:
        with store.write() as tx:
            login_throttle.record_failure(tx.conn, keys, now)
        raise RegistrationRefused("invite", "This invite code is not valid, or it was already used.")
    if taken:
        raise RegistrationRefused("username", "This username is not available. Please choose another.")
    password_hash = passwords.hash_password(registration.password)  # slow: before the transaction
    patient_id = str(uuid.uuid4())
    writer = WriteContext(SOURCE, None, None, f"Patient/{patient_id}", patient_id)
    ctx = Context(store, settings, None, writer)

    def work(tx: Tx) -> User:
        store.lock_all(tx, [f"auth_user:{registration.username.lower()}"])
        if users.name_taken(tx.conn, registration.username):
            raise RegistrationRefused("username", "This username is not available. Please choose another.")
        create(ctx, tx, "Patient", registration.patient(), assigned_id=patient_id)
        user = users.insert_user(
            tx.conn, registration.username, password_hash, fhir_user=f"Patient/{patient_id}", now=now
        )
        if mode == "invite" and not invitations.use(tx.conn, registration.invite, user_pk=user.pk, now=now):
            raise RegistrationRefused("invite", "This invite code is not valid, or it was already used.")
        login_throttle.record_failure(tx.conn, [made], now)  # counts registrations from this address
        return user

    try:
        user = ctx.transact(work, SOURCE)
    except IntegrityError:  # the same name, committed by a racing registration on SQLite
        raise RegistrationRefused(
            "username", "This username is not available. Please choose another."
        ) from None
    except FhirError:  # the form checks make this unlikely; the Patient's own words are not shown
        raise RegistrationRefused("", "These details cannot be stored. Please check them.") from None
    return Registered(user, patient_id)
