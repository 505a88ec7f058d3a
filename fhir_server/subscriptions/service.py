"""Starting Subscriptions in a process: the matcher listener, the owners' read test, a deliverer (docs/subscriptions.md)."""

from __future__ import annotations

import threading

from ..settings import Settings
from ..store.sql import Store
from . import admission, delivery, matcher, stream


def install() -> None:
    """Register what every process needs before writes or events happen (idempotent)."""
    admission.register()
    matcher.install(committed=_committed)


def _committed() -> None:
    """A matcher batch committed: wake the deliverers if it queued anything."""
    if matcher.QUEUED.is_set():
        matcher.QUEUED.clear()
        delivery.wake_all()
        stream.bump()


def start(store: Store, settings: Settings) -> tuple[delivery.Deliverer, threading.Event]:
    """Deliver this store's notifications from this process."""
    return delivery.start(store, settings)
