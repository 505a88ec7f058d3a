"""Invite codes for patient self-registration: single use, expiring, stored as digests.

The operator creates them (`fhir-server invites add`, `POST /admin/invites`) and hands one to each
person invited. A code is 20 random base32 characters (100 bits) shown in groups of four,
`ABCD-EFGH-JKMN-PQRS-TUVW`; what a person types is forgiven case, spaces and hyphens. Only the
SHA-256 digest of the canonical form is stored, and using a code is one conditional UPDATE, so two
registrations racing for one code cannot both succeed.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from . import opaque_token
from .tables import registration_invite

CODE_CHARS = 20
GROUP = 4
MAX_DAYS = 366
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_FORGIVEN = frozenset(" -\t")
PRUNE_AFTER = 30 * 24 * 3600  # used or expired codes are kept this long (for `invites list`), then pruned


@dataclass(frozen=True)
class Invite:
    code_hash: str
    created_at: int
    expires_at: int
    used_at: int | None

    def public_view(self, now: int) -> dict[str, object]:
        """What an operator may list: never the code (only its digest's first characters)."""
        state = "used" if self.used_at is not None else ("expired" if self.expires_at < now else "open")
        return {
            "id": self.code_hash[:12],
            "created": self.created_at,
            "expires": self.expires_at,
            "state": state,
        }


def new_code() -> str:
    """A fresh code in its displayed form (groups of four)."""
    raw = base64.b32encode(secrets.token_bytes(CODE_CHARS * 5 // 8)).decode("ascii")
    return "-".join(raw[i : i + GROUP] for i in range(0, CODE_CHARS, GROUP))


def canonical(text: str) -> str | None:
    """The code `text` stands for (upper case, no separators), or None when it cannot be one."""
    if len(text) > 4 * CODE_CHARS:
        return None
    code = "".join(c for c in text if c not in _FORGIVEN).upper()
    if len(code) != CODE_CHARS or not set(code) <= _ALPHABET:
        return None
    return code


def create(conn: Connection, *, days: int, now: int) -> tuple[str, int]:
    """A new code valid for `days` days; returns it (shown only now) and its expiry time."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"an invite is valid for 1 to {MAX_DAYS} days")
    conn.execute(delete(registration_invite).where(registration_invite.c.expires_at < now - PRUNE_AFTER))
    code = new_code()
    expires = now + days * 24 * 3600
    conn.execute(
        insert(registration_invite).values(
            code_hash=_digest(code.replace("-", "")),
            created_at=now,
            expires_at=expires,
            used_at=None,
            used_by=None,
        )
    )
    return code, expires


def usable(conn: Connection, text: str, *, now: int) -> bool:
    """Whether `text` is an unused, unexpired code (without using it)."""
    code = canonical(text)
    if code is None:
        return False
    row = conn.execute(
        select(registration_invite.c.expires_at, registration_invite.c.used_at).where(
            registration_invite.c.code_hash == _digest(code)
        )
    ).first()
    return row is not None and row.used_at is None and row.expires_at >= now


def use(conn: Connection, text: str, *, user_pk: int, now: int) -> bool:
    """Spend the code for the user it created; False when it is unknown, used or expired."""
    code = canonical(text)
    if code is None:
        return False
    done = conn.execute(
        update(registration_invite)
        .where(
            registration_invite.c.code_hash == _digest(code),
            registration_invite.c.used_at.is_(None),
            registration_invite.c.expires_at >= now,
        )
        .values(used_at=now, used_by=user_pk)
    )
    return done.rowcount == 1


def all_invites(conn: Connection) -> list[Invite]:
    rows = conn.execute(select(registration_invite).order_by(registration_invite.c.created_at))
    return [Invite(r.code_hash, int(r.created_at), int(r.expires_at), r.used_at) for r in rows]


def _digest(code: str) -> str:
    return opaque_token.digest("invite:" + code)
