"""Starting Subscriptions in a process: the matcher listener, the owners' read test, a deliverer (docs/subscriptions.md)."""

from __future__ import annotations

import threading

from ..settings import Settings
from ..store.sql import Store
from . import admission, delivery, matcher


def install() -> None:
    """Register what every process needs before writes or events happen (idempotent)."""
    admission.register()
    matcher.install(committed=delivery.wake_all)


def start(store: Store, settings: Settings) -> tuple[delivery.Deliverer, threading.Event]:
    """Deliver this store's notifications from this process."""
    return delivery.start(store, settings)
