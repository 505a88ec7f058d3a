"""StructureDefinitions stored on the server, found by canonical url for validation (https://hl7.org/fhir/R4/profiling.html).

`resolver(ctx, tx)` gives the `profiles.validator.StoredProfiles` a write validates with: a
`meta.profile` claim `url` or `url|version` that no loaded package holds is looked up by the
index rows of `StructureDefinition?url=...[&version=...]` in the writing transaction
(`store/canonical.py`: one indexed statement answering the version's header; the most recently
updated match wins), once per url and unit of work (`tx.memo`), and compiled once per stored
version (`profiles/stored.py`: the content is read only for a version not compiled yet), so an
update or delete made by any server process applies to the next write.

Whose rule: the profiles a resource claims are the server's validation, not a read by the caller,
so a write is validated against a stored profile whatever the caller's grants on
StructureDefinition (a patient app cannot escape a profile by lacking a scope); the issues name
only what the written resource breaks. `$validate` with `profile=` is a request to use the
definition, so there the caller must be allowed to search StructureDefinition (`for_caller`).
"""

from __future__ import annotations

from typing import Any

from profiles.snapshot import Definition
from profiles.validator import StoredProfiles

from ..auth import enforce
from ..errors import Forbidden
from ..search import plan, query, stored_profile
from ..search.parameters import param_id
from ..search.values import escape
from ..store.sql import Tx
from .context import Context

_MEMO = "stored_profiles"
_URL = param_id("StructureDefinition", "url")
_VERSION = param_id("StructureDefinition", "version")


def resolver(ctx: Context, tx: Tx) -> StoredProfiles:
    """Stored profiles as the server's validation rule (whatever the caller may read)."""
    memo: dict[str, Definition | None] = tx.memo.setdefault(_MEMO, {})

    def resolve(url: str) -> Definition | None:
        if url not in memo:
            memo[url] = _find(tx, url, None, ctx.settings.base)
        return memo[url]

    return resolve


def for_caller(ctx: Context, tx: Tx) -> StoredProfiles:
    """Stored profiles the caller may search for (`$validate` with `profile=`)."""

    def resolve(url: str) -> Definition | None:
        return _find(tx, url, ctx.principal, ctx.settings.base, as_caller=True)

    return resolve


def written(tx: Tx) -> None:
    """A StructureDefinition was written in `tx`: look profiles up again."""
    tx.memo.pop(_MEMO, None)


def _find(tx: Tx, url: str, principal: Any, base: str, *, as_caller: bool = False) -> Definition | None:
    if as_caller and not _may_search(tx, url.partition("|")[0], principal, base):
        return None
    return stored_profile.find(tx, url)


def _may_search(tx: Tx, url: str, principal: Any, base: str) -> bool:
    """Whether the caller's grants let it find the StructureDefinition with this url."""
    q = query.parse("StructureDefinition", [("url", escape(url)), ("_count", "1")], lenient=False)
    try:
        restrict = enforce.search_restriction(principal, q, base)
    except Forbidden:
        return False
    if restrict is None:
        return True
    tx.flush(check_references=False)
    return (
        tx.run_search(plan.build(q, restrict=restrict, base_url=base or None, default_count=1)).first()
        is not None
    )
