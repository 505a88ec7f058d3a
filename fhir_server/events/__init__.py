"""Change events to listeners registered at start-up (store/outbox.py keeps them; docs/events.md).

A listener is `listener(events, tx)`: a batch of `ChangeEvent`s in commit order, and the write
transaction in which the consumer's position advances once it returns. Register one with
`register(name, listener)` in a module imported below; the name keys its durable position.
"""

from __future__ import annotations

from ..store.outbox import ChangeEvent, WriteContext
from .dispatcher import Dispatcher, start
from .registry import LISTENERS, Listener, register, unregister

# Installed listeners: import each module that registers one here.

__all__ = [
    "LISTENERS",
    "ChangeEvent",
    "Dispatcher",
    "Listener",
    "WriteContext",
    "register",
    "start",
    "unregister",
]
