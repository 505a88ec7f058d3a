"""The change-event listeners of this process, by consumer name (docs/events.md)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from ..store.outbox import ChangeEvent
from ..store.sql import Tx

# Called with a batch of events in commit order and the transaction that advances the consumer's
# position: what the listener writes through `tx` commits with that position (exactly once); any
# other effect happens at least once (again after a crash before the commit).
Listener = Callable[[list[ChangeEvent], Tx], None]

LISTENERS: dict[str, Listener] = {}
# Called after a delivery to the listener of that name committed (e.g. to wake whoever acts on what
# it wrote); in the dispatcher's thread, so it must return at once.
COMMITTED: dict[str, Callable[[], None]] = {}


# Asked, in a delivery's transaction, whether the listener would do nothing with ANY event committed
# so far (the Subscription matcher: no live Subscription); if so the dispatcher moves its position
# to the newest committed event without reading the events (see `Dispatcher.deliver`).
Idle = Callable[[Connection], bool]
IDLE: dict[str, Idle] = {}


def register(
    name: str,
    listener: Listener,
    *,
    committed: Callable[[], None] | None = None,
    idle: Idle | None = None,
) -> None:
    """Deliver every change event to `listener`; `name` keys its position in `change_consumer`, so
    a listener registered again under the same name resumes where it stopped."""
    if name in LISTENERS and LISTENERS[name] is not listener:
        raise ValueError(f"a change-event listener named {name!r} is already registered")
    LISTENERS[name] = listener
    if committed is not None:
        COMMITTED[name] = committed
    if idle is not None:
        IDLE[name] = idle


def unregister(name: str) -> None:
    LISTENERS.pop(name, None)
    COMMITTED.pop(name, None)
    IDLE.pop(name, None)
