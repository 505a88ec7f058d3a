"""The change-event listeners of this process, by consumer name (docs/events.md)."""

from __future__ import annotations

from collections.abc import Callable

from ..store.outbox import ChangeEvent
from ..store.sql import Tx

# Called with a batch of events in commit order and the transaction that advances the consumer's
# position: what the listener writes through `tx` commits with that position (exactly once); any
# other effect happens at least once (again after a crash before the commit).
Listener = Callable[[list[ChangeEvent], Tx], None]

LISTENERS: dict[str, Listener] = {}


def register(name: str, listener: Listener) -> None:
    """Deliver every change event to `listener`; `name` keys its position in `change_consumer`, so
    a listener registered again under the same name resumes where it stopped."""
    if name in LISTENERS and LISTENERS[name] is not listener:
        raise ValueError(f"a change-event listener named {name!r} is already registered")
    LISTENERS[name] = listener


def unregister(name: str) -> None:
    LISTENERS.pop(name, None)
