"""End users who log in at the authorization server (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-identity-data).

Each user has an Argon2id password hash, optionally a TOTP secret, and optionally the FHIR resource
that represents them (`fhirUser`: `Patient/123`, `Practitioner/9`, ...). A user whose fhirUser is
a Patient or RelatedPerson uses apps as a patient; anyone else as a clinician.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, func, insert, select, update

from . import password_policy, passwords, totp
from .principal import FHIR_USER_TYPES
from .tables import auth_user

_USERNAME = re.compile(r"[A-Za-z0-9._@+\-]{1,128}")
_FHIR_USER = re.compile(r"([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
MIN_PASSWORD = password_policy.MIN_LENGTH
USERNAME_RULE = "username must be 1-128 characters of [A-Za-z0-9._@+-]"


class UserError(ValueError):
    """A user we refuse to create; the message says why."""


@dataclass(frozen=True)
class User:
    """A person who can log in."""

    pk: int
    username: str
    fhir_user: str | None = None
    password_hash: str = field(default="", repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    totp_last_step: int | None = None

    @property
    def kind(self) -> Literal["patient", "user"]:
        """`patient` for patient-facing users (Patient, and caregivers: RelatedPerson, or a Person
        linked to RelatedPersons, auth/caregiver.py), `user` for clinicians."""
        resource_type = (self.fhir_user or "").partition("/")[0]
        return "patient" if resource_type in ("Patient", "RelatedPerson", "Person") else "user"

    @property
    def patient_id(self) -> str | None:
        """The Patient id when the user is a patient."""
        resource_type, _, ident = (self.fhir_user or "").partition("/")
        return ident if resource_type == "Patient" else None

    @property
    def subject(self) -> str:
        """The stable, non-identifying `sub` of this user's tokens."""
        return f"user-{self.pk}"

    def public_view(self) -> dict[str, Any]:
        return {"username": self.username, "fhirUser": self.fhir_user, "totp": self.totp_secret is not None}


def check_fhir_user(fhir_user: str) -> str:
    """`Type/id` of a type SMART allows for fhirUser."""
    match = _FHIR_USER.fullmatch(fhir_user)
    if match is None or match.group(1) not in FHIR_USER_TYPES:
        raise UserError(f"fhirUser must be <{'|'.join(sorted(FHIR_USER_TYPES))}>/<id>")
    return fhir_user


def add(
    conn: Connection,
    username: str,
    password: str,
    *,
    fhir_user: str | None = None,
    with_totp: bool = False,
    now: int | None = None,
) -> tuple[User, str | None]:
    """Create a user; returns it and, with `with_totp`, the new TOTP secret (shown only now)."""
    check_username(username)
    try:
        password_policy.check(password, username)
    except password_policy.WeakPassword as weak:
        raise UserError(str(weak)) from None
    if fhir_user is not None:
        check_fhir_user(fhir_user)
    if get_by_username(conn, username) is not None:
        raise UserError(f"user {username} already exists")
    secret = totp.generate_secret() if with_totp else None
    user = insert_user(
        conn, username, passwords.hash_password(password), fhir_user=fhir_user, totp_secret=secret, now=now
    )
    return user, secret


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise UserError(USERNAME_RULE)
    return username


def insert_user(
    conn: Connection,
    username: str,
    password_hash: str,
    *,
    fhir_user: str | None = None,
    totp_secret: str | None = None,
    now: int | None = None,
) -> User:
    """Store a user whose name and password were checked and hashed by the caller."""
    result = conn.execute(
        insert(auth_user)
        .values(
            username=username,
            password_hash=password_hash,
            totp_secret=totp_secret,
            fhir_user=fhir_user,
            created_at=int(time.time()) if now is None else now,
        )
        .returning(auth_user.c.pk)
    )
    user = get(conn, int(result.scalar_one()))
    assert user is not None
    return user


def name_taken(conn: Connection, username: str) -> bool:
    """Whether a user has this name, ignoring case (self-registration refuses look-alikes)."""
    found = conn.execute(
        select(auth_user.c.pk).where(func.lower(auth_user.c.username) == username.lower()).limit(1)
    ).first()
    return found is not None


def set_password_hash(conn: Connection, pk: int, password_hash: str) -> None:
    conn.execute(update(auth_user).where(auth_user.c.pk == pk).values(password_hash=password_hash))


def set_totp(conn: Connection, pk: int, secret: str, used_step: int) -> None:
    """Require TOTP from now on, with `used_step` (the code that confirmed it) already spent."""
    conn.execute(
        update(auth_user).where(auth_user.c.pk == pk).values(totp_secret=secret, totp_last_step=used_step)
    )


def get(conn: Connection, pk: int) -> User | None:
    row = conn.execute(select(auth_user).where(auth_user.c.pk == pk)).first()
    return _user(row) if row is not None else None


def get_by_username(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(auth_user).where(auth_user.c.username == username)).first()
    return _user(row) if row is not None else None


def all_users(conn: Connection) -> list[User]:
    return [_user(row) for row in conn.execute(select(auth_user).order_by(auth_user.c.username))]


def _user(row: Any) -> User:
    return User(
        pk=int(row.pk),
        username=row.username,
        fhir_user=row.fhir_user,
        password_hash=row.password_hash,
        totp_secret=row.totp_secret,
        totp_last_step=row.totp_last_step,
    )
