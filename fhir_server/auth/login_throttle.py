"""Login throttling with exponential backoff, not lockout (https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#login-throttling, NIST SP 800-63B 5.2.2).

Failed logins are counted in the database, so every API process shares them, under three keys: the
(username, client address) pair, the username alone and the address alone. Each key lets some
failures through, then makes attempts wait an exponentially growing, capped delay after its last
failure. The pair key slows a guesser at one address without touching the owner at another; the
username key (many more failures allowed, short delays) bounds guessing spread over many addresses;
the address key bounds credential stuffing across usernames. Only digests of the keys are stored,
and the username need not exist, so throttling says nothing about which accounts exist. A key
without failures for its `forget` period starts over, and is pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from . import opaque_token
from .tables import login_throttle


@dataclass(frozen=True)
class Backoff:
    """How failures under one kind of key delay further attempts."""

    free: int  # failures before any delay
    base: int  # seconds to wait after failure number `free`; doubles with every further failure
    cap: int  # the longest wait
    forget: int  # seconds without a failure after which the count starts over

    def delay(self, failures: int) -> int:
        """Seconds to wait after the last of `failures` consecutive failures."""
        if failures < self.free:
            return 0
        return min(self.cap, self.base << min(failures - self.free, 32))


PAIR = Backoff(free=5, base=30, cap=15 * 60, forget=24 * 3600)
USER = Backoff(free=100, base=1, cap=60, forget=15 * 60)
ADDRESS = Backoff(free=50, base=1, cap=60, forget=3600)
PRUNE_AFTER = max(PAIR.forget, USER.forget, ADDRESS.forget)


@dataclass(frozen=True)
class ThrottleKey:
    kind: str  # pair | user | address
    digest: str
    backoff: Backoff


def keys(username: str, address: str) -> list[ThrottleKey]:
    """The pair, username and address keys of one login attempt."""
    name = username.strip().lower()
    return [
        ThrottleKey("pair", opaque_token.digest(f"pair:{name}:{address}"), PAIR),
        ThrottleKey("user", opaque_token.digest(f"user:{name}"), USER),
        ThrottleKey("address", opaque_token.digest(f"address:{address}"), ADDRESS),
    ]


def reset_keys(address: str) -> list[ThrottleKey]:
    """The keys of one use of a password reset link: the link page per address (backoff like a
    (user, address) pair) and the address count shared with logins."""
    return [
        ThrottleKey("pair", opaque_token.digest(f"reset:{address}"), PAIR),
        ThrottleKey("address", opaque_token.digest(f"address:{address}"), ADDRESS),
    ]


def wait_seconds(conn: Connection, throttle_keys: Sequence[ThrottleKey], now: int) -> int:
    """Seconds before an attempt under these keys may be checked (0: now)."""
    by_digest = {key.digest: key.backoff for key in throttle_keys}
    rows = conn.execute(
        select(login_throttle.c.key_hash, login_throttle.c.failures, login_throttle.c.last_failure).where(
            login_throttle.c.key_hash.in_(list(by_digest))
        )
    ).all()
    wait = 0
    for digest, failures, last_failure in rows:
        backoff = by_digest[digest]
        if last_failure >= now - backoff.forget:
            wait = max(wait, last_failure + backoff.delay(failures) - now)
    return wait


def record_failure(conn: Connection, throttle_keys: Sequence[ThrottleKey], now: int) -> None:
    """Count one more failure under every key (atomically, in key order so writers do not deadlock);
    keys whose failures are all forgotten are pruned first."""
    conn.execute(delete(login_throttle).where(login_throttle.c.last_failure < now - PRUNE_AFTER))
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for key in sorted(throttle_keys, key=lambda k: k.digest):
        statement = insert(login_throttle).values(key_hash=key.digest, failures=1, last_failure=now)
        forgotten = login_throttle.c.last_failure < now - key.backoff.forget
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[login_throttle.c.key_hash],
                set_={
                    "failures": case((forgotten, 1), else_=login_throttle.c.failures + 1),
                    "last_failure": now,
                },
            )
        )


def record_success(conn: Connection, throttle_keys: Sequence[ThrottleKey]) -> None:
    """Forget the failures of the (username, address) pair; the username and address counts stay."""
    pairs = [key.digest for key in throttle_keys if key.kind == "pair"]
    conn.execute(delete(login_throttle).where(login_throttle.c.key_hash.in_(pairs)))
