"""search: GET [base]/[type]?params, system and compartment search (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from typing import Any

from ..errors import NotImplementedYet
from ..store.sql import Tx
from .context import Context


def search(
    ctx: Context,
    tx: Tx,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    lenient: bool = False,
    compartment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A searchset Bundle for the query (wired to search.plan when it lands)."""
    raise NotImplementedYet("Search is not available yet")
