"""What one request did, gathered while it runs and recorded as an AuditEvent after it (https://hl7.org/fhir/R4/auditevent.html).

The audit middleware (api/audit_trail.py) opens an `Access` for each request in a context variable; the
code that serves the request adds to it what only it knows: the caller (`note_caller`), the resources
it returned (`note_contents`, their patients are worked out later, off the request path), the search
as the server understood it (`note_query`), the authorization server's events (`note_event`) and
Consent decisions (`note_consent`). Every `note_*` is a no-op outside a request or with audit off.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_CONTENTS = 1000  # resources kept per request for working out patients (a page is at most this)


@dataclass(eq=False)
class Access:
    """One request: filled in by the middleware (method, interaction, status) and by the code serving it."""

    method: str
    interaction: str  # api/interaction.classify: read, vread, search-type, create, operation, auth ...
    res_type: str
    path: str  # below the base URL: names the instance and operation (never logged, only audited)
    request_id: str
    started_us: int
    caller: Any = None  # the Principal (client_id, kind, subject, fhir_user, patient), None before auth
    query: str | None = None  # the search parameters the server used
    contents: list[bytes] = field(default_factory=list)  # resources returned (JSON as stored)
    event: str | None = None  # the authorization server's event: login, token, refresh, revoke
    event_detail: str | None = None  # e.g. the grant type
    event_user: str | None = None  # the user id at the authorization server, when known
    event_client: str | None = None
    event_failed: bool = False
    consent: list[str] = field(default_factory=list)  # "Consent/<id>" whose deny applied
    status: int = 0
    ended_us: int = 0


_current: contextvars.ContextVar[Access | None] = contextvars.ContextVar("audit_access", default=None)


def begin(access: Access) -> contextvars.Token[Access | None]:
    return _current.set(access)


def end(token: contextvars.Token[Access | None]) -> None:
    _current.reset(token)


def current() -> Access | None:
    return _current.get()


def note_caller(principal: Any) -> None:
    access = _current.get()
    if access is not None:
        access.caller = principal


def note_contents(contents: Iterable[bytes]) -> None:
    access = _current.get()
    if access is not None and len(access.contents) < MAX_CONTENTS:
        access.contents.extend(c for c in contents if c)
        del access.contents[MAX_CONTENTS:]


def note_query(query: str) -> None:
    access = _current.get()
    if access is not None:
        access.query = query


def note_event(
    event: str,
    *,
    failed: bool,
    detail: str | None = None,
    user: str | None = None,
    client: str | None = None,
) -> None:
    """An authorization server event (login, token, refresh, revoke) with its outcome."""
    access = _current.get()
    if access is not None:
        access.event, access.event_failed, access.event_detail = event, failed, detail
        access.event_user, access.event_client = user, client


def note_consent(consent_ids: Iterable[str]) -> None:
    access = _current.get()
    if access is not None:
        access.consent.extend(c for c in consent_ids if c not in access.consent)
