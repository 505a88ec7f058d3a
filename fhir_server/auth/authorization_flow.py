"""The interactive part of the authorization code flow: login, patient picker, consent (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-authorization-code).

Each method takes what a page submitted and returns the next `Step` (a page to show, or where to
redirect the browser); the HTTP layer only renders steps. After login, the pending request is bound
to a browser session (a cookie whose digest is stored), and the later pages must present it. The
decision ends the request: approve -> `code` and `state` to the redirect URI; deny -> `error=access_denied`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, replace

import orjson
from sqlalchemy import Connection

from ..audit import access as audit
from ..store.repository import UnitOfWork
from ..store.sql import Store
from . import (
    authorization_code,
    authorization_request,
    caregiver,
    clients,
    consent,
    launch,
    opaque_token,
    users,
)
from .authorization_request import AuthorizeError, Pending, with_query
from .consent import Offer
from .login import LoginAttempt, LoginRefused, log_in
from .tokens import new_grant_id
from .users import User

EXPIRED = "This sign-in request has expired or was already completed. Please start again from the app."
PATIENT_LIST_LIMIT = 50
PATIENT_SCAN_LIMIT = 2000


@dataclass(frozen=True)
class LoginStep:
    handle: str
    client_name: str
    error: str | None = None
    status: int = 200
    retry_after: int | None = None  # seconds, when the login was throttled


@dataclass(frozen=True)
class PatientStep:
    handle: str
    client_name: str
    patients: tuple[tuple[str, str], ...]  # (id, label)
    query: str = ""
    error: str | None = None


@dataclass(frozen=True)
class ConsentStep:
    handle: str
    client_name: str
    offers: tuple[Offer, ...]
    patient: str | None = None  # label of the patient in context
    user: str = ""


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class ErrorStep:
    message: str
    status: int = 400


Step = LoginStep | PatientStep | ConsentStep | Redirect | ErrorStep


@dataclass(frozen=True)
class Outcome:
    """A step, and the browser session to set as a cookie when one was just opened."""

    step: Step
    session: str | None = None


@dataclass
class AuthorizationFlow:
    store: Store
    fhir_base: str
    resource_types: Container[str] | None = None
    clock: Callable[[], float] = time.time

    def start(self, params: Sequence[tuple[str, str]]) -> Step:
        """`/auth/authorize`: validate, keep the request, show the login page."""
        now = int(self.clock())
        with self.store.write() as tx:
            try:
                request = authorization_request.validate(
                    params,
                    fhir_base=self.fhir_base,
                    lookup_client=lambda cid: clients.get(tx.conn, cid),
                    resolve_launch=lambda value: launch.resolve(tx.conn, value, now=now),
                    resource_types=self.resource_types,
                )
            except AuthorizeError as error:
                location = error.location()
                return (
                    Redirect(location) if location else ErrorStep(f"The app's request is not valid: {error}")
                )
            handle = authorization_request.begin(tx.conn, request, now=now)
        return LoginStep(handle, request.client.name or request.client.client_id)

    def log_in(self, handle: str, attempt: LoginAttempt) -> Outcome:
        """The login form: on success open a session and go on to the patient picker or consent."""
        now = int(self.clock())
        with self.store.read() as tx:
            pending = authorization_request.load(tx.conn, handle, now=now)
            name = self._client_name(tx.conn, pending)
        if pending is None:
            return Outcome(ErrorStep(EXPIRED))
        try:
            user = log_in(self.store, attempt, clock=self.clock)
        except LoginRefused as refused:
            audit.note_event("login", failed=True, client=pending.client_id)
            if refused.throttled:
                wait = refused.retry_after
                message = (
                    f"Too many failed sign-in attempts. Please try again in {wait} second{'s' * (wait != 1)}."
                )
                return Outcome(LoginStep(handle, name, message, 429, wait))
            return Outcome(LoginStep(handle, name, "The username, password or code is not correct.", 401))
        audit.note_event("login", failed=False, user=user.subject, client=pending.client_id)
        session = opaque_token.new()
        with self.store.write() as tx:
            authorization_request.logged_in(tx.conn, handle, user_pk=user.pk, session=session, now=now)
            try:
                context = consent.patient_context(user, pending.context)
            except consent.WrongPatient:
                authorization_request.finish(tx.conn, handle)
                return Outcome(self._denied(pending, "this launch is for another patient"), session)
            if (
                caregiver.is_caregiver(user.fhir_user)
                and context.patient is not None
                and context.patient not in caregiver.dependants(tx, user.fhir_user)
            ):
                authorization_request.finish(tx.conn, handle)
                return Outcome(
                    self._denied(pending, "this launch is for a patient this user does not care for"), session
                )
            if context != pending.context:
                authorization_request.set_context(tx.conn, handle, context)
            pending = replace(pending, context=context)
            return Outcome(self._after_login(tx, handle, pending, user, name), session)

    def choose_patient(
        self, handle: str, session: str | None, patient_id: str | None, query: str = ""
    ) -> Step:
        """The patient picker: filter the list, or put the chosen patient in context."""
        now = int(self.clock())
        with self.store.write() as tx:
            found = self._logged_in(tx.conn, handle, session, now)
            if isinstance(found, ErrorStep):
                return found
            pending, user, name = found
            if not consent.needs_patient_choice(pending.scope, user, pending.context):
                return self._consent(tx, handle, pending, user, name)
            if patient_id is None:
                return PatientStep(handle, name, _choices(tx, user, query), query)
            stored = tx.current("Patient", patient_id) if _is_id(patient_id) else None
            allowed = not caregiver.is_caregiver(user.fhir_user) or patient_id in caregiver.dependants(
                tx, user.fhir_user
            )
            if stored is None or stored.deleted or not allowed:
                return PatientStep(handle, name, _choices(tx, user, query), query, "Please choose a patient.")
            context = replace(pending.context, patient=patient_id)
            authorization_request.set_context(tx.conn, handle, context)
            return self._consent(tx, handle, replace(pending, context=context), user, name)

    def decide(self, handle: str, session: str | None, approve: bool, ticked: Iterable[str]) -> Step:
        """The consent form: approve (with the scopes left ticked) or deny."""
        now = int(self.clock())
        with self.store.write() as tx:
            found = self._logged_in(tx.conn, handle, session, now)
            if isinstance(found, ErrorStep):
                return found
            pending, user, _ = found
            if consent.needs_patient_choice(pending.scope, user, pending.context):
                return ErrorStep("Choose a patient first.")
            if not authorization_request.finish(tx.conn, handle):
                return ErrorStep(EXPIRED)
            if not approve:
                return self._denied(pending, "the user denied access")
            scope = consent.granted(
                pending.scope, ticked, user, pending.context, ehr_launch=pending.ehr_launch
            )
            if not (scope.resources or scope.launch or scope.named):
                return self._denied(pending, "the user granted none of the requested scopes")
            context = consent.token_context(scope, pending.context, ehr_launch=pending.ehr_launch)
            grant = authorization_code.CodeGrant(
                grant_id=new_grant_id(),
                client_id=pending.client_id,
                user_pk=user.pk,
                redirect_uri=pending.redirect_uri,
                scope=scope.to_string(),
                code_challenge=pending.code_challenge,
                nonce=pending.nonce,
                context=context.as_json(),
                auth_time=pending.auth_time or now,
            )
            code = authorization_code.issue(tx.conn, grant, now=now)
        return Redirect(with_query(pending.redirect_uri, {"code": code, "state": pending.state}))

    def _logged_in(
        self, conn: Connection, handle: str, session: str | None, now: int
    ) -> tuple[Pending, User, str] | ErrorStep:
        pending = authorization_request.load(conn, handle, now=now)
        if pending is None:
            return ErrorStep(EXPIRED)
        if (
            session is None
            or pending.session_hash is None
            or pending.user_pk is None
            or opaque_token.digest(session) != pending.session_hash
        ):
            return ErrorStep("Please sign in first (this browser session did not sign in).", 403)
        user = users.get(conn, pending.user_pk)
        if user is None:
            return ErrorStep(EXPIRED)
        return pending, user, self._client_name(conn, pending)

    def _after_login(self, tx: UnitOfWork, handle: str, pending: Pending, user: User, name: str) -> Step:
        if consent.needs_patient_choice(pending.scope, user, pending.context):
            return PatientStep(handle, name, _choices(tx, user, ""))
        return self._consent(tx, handle, pending, user, name)

    def _consent(self, tx: UnitOfWork, handle: str, pending: Pending, user: User, name: str) -> Step:
        offers = consent.offers(pending.scope, user, pending.context, ehr_launch=pending.ehr_launch)
        patient = None
        if pending.context.patient is not None:
            stored = _patient_label(tx, pending.context.patient)
            patient = stored or f"Patient/{pending.context.patient}"
        return ConsentStep(handle, name, tuple(offers), patient, user.username)

    @staticmethod
    def _client_name(conn: Connection, pending: Pending | None) -> str:
        if pending is None:
            return ""
        client = clients.get(conn, pending.client_id)
        return (client.name or client.client_id) if client is not None else pending.client_id

    @staticmethod
    def _denied(pending: Pending, reason: str) -> Redirect:
        error = AuthorizeError(
            "access_denied", reason, redirect_uri=pending.redirect_uri, state=pending.state
        )
        location = error.location()
        assert location is not None
        return Redirect(location)


def _is_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-." for c in value) and value.isascii()


def _choices(tx: UnitOfWork, user: User, query: str) -> tuple[tuple[str, str], ...]:
    """The picker's list: a caregiver's own people (auth/caregiver.py), else every patient."""
    if not caregiver.is_caregiver(user.fhir_user):
        return _patients(tx, query)
    needle = query.strip().lower()
    out = []
    for patient_id in caregiver.dependants(tx, user.fhir_user):
        label = _patient_label(tx, patient_id) or patient_id
        if not needle or needle in label.lower():
            out.append((patient_id, label))
    return tuple(sorted(out, key=lambda item: item[1].lower()))


def _patients(tx: UnitOfWork, query: str) -> tuple[tuple[str, str], ...]:
    """Patients to pick from (id, label), optionally those whose name or id contains `query`."""
    needle = query.strip().lower()
    out: list[tuple[str, str]] = []
    for stored in tx.current_of_type("Patient", limit=PATIENT_SCAN_LIMIT):
        label = _label(stored.res_id, stored.content)
        if needle and needle not in label.lower():
            continue
        out.append((stored.res_id, label))
        if len(out) >= PATIENT_LIST_LIMIT:
            break
    return tuple(sorted(out, key=lambda item: item[1].lower()))


def _patient_label(tx: UnitOfWork, patient_id: str) -> str | None:
    stored = tx.current("Patient", patient_id) if _is_id(patient_id) else None
    return _label(stored.res_id, stored.content) if stored is not None and not stored.deleted else None


def _label(res_id: str, content: bytes) -> str:
    """ "Family, Given (birth date)" from a stored Patient, falling back to its id."""
    try:
        patient = orjson.loads(content)
    except orjson.JSONDecodeError:
        return res_id
    names = patient.get("name") or []
    name = names[0] if names and isinstance(names[0], dict) else {}
    given = " ".join(name.get("given") or [])
    family = name.get("family") or ""
    text = name.get("text") or ", ".join(p for p in (family, given) if p) or res_id
    born = patient.get("birthDate")
    return f"{text} ({born})" if born else text
