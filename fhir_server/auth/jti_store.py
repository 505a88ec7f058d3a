"""Used client-assertion `jti`s in the database (https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html#signature-verification).

"check that the jti value has not been previously encountered for the given iss within the maximum
allowed authentication JWT lifetime": a primary key on (client_id, jti) makes the check atomic
across every worker process (the jti is kept as a digest, whatever its length). Rows are pruned once their assertion could no longer be accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from ..store.sql import Store
from . import opaque_token
from .client_assertion import MAX_LIFETIME
from .tables import used_jti

PRUNE_EVERY = 60  # seconds


class DatabaseJtiStore:
    """A `JtiStore` shared by all processes using the same database."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._next_prune = 0.0

    def remember(self, client_id: str, jti: str, exp: int) -> bool:
        now = self._clock()
        try:
            with self._store.write() as tx:
                if now >= self._next_prune:
                    self._next_prune = now + PRUNE_EVERY
                    tx.conn.execute(delete(used_jti).where(used_jti.c.expires_at < int(now) - MAX_LIFETIME))
                row = {"client_id": client_id, "jti": opaque_token.digest(jti), "expires_at": exp}
                tx.conn.execute(insert(used_jti).values(row))
        except IntegrityError:
            return False
        return True
