"""What every interaction receives besides its own arguments: the store, settings and the caller.

The core knows nothing about HTTP (ARCHITECTURE.md convention 2): interactions take plain values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..settings import Settings
from ..store.outbox import WriteContext
from ..store.sql import Store, Tx

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """The store, the settings and the authenticated principal (None when security is off)."""

    store: Store
    settings: Settings
    principal: Any = None
    # Where writes come from (a job sets its own); None: this request, by `principal`.
    writer: WriteContext | None = None

    def write_context(self, source: str = "rest") -> WriteContext:
        """What the writes of this interaction record (store/outbox.py): the job's context when a
        job runs it, else `source` (e.g. "transaction:<Bundle id>") by the principal."""
        return self.writer or WriteContext.of(source, self.principal)

    def transact(self, work: Callable[[Tx], T], source: str = "rest") -> T:
        """`store.transact(work)` with this interaction's write context."""
        return self.store.transact(work, self.write_context(source))
