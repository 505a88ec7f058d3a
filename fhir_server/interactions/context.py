"""What every interaction receives besides its own arguments: the store, settings and the caller.

The core knows nothing about HTTP (ARCHITECTURE.md convention 2): interactions take plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from ..store.sql import Store


@dataclass(frozen=True)
class Context:
    """The store, the settings and the authenticated principal (None when security is off)."""

    store: Store
    settings: Settings
    principal: Any = None
