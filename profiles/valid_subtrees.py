"""Element values already found valid, so a repeated value is walked once (https://hl7.org/fhir/R4/validation.html).

Wearable and ingest data repeat the same `code`, `category`, `subject`, `device` and `meta` in
every record, and a Synthea bundle repeats its codes and references. The walk of a complex value
depends only on: the compiled element and type it is walked against, whether it is the profile
pass, whether warnings are wanted, the type of the resource it is in, and its own JSON, EXCEPT
where a rule reads outside the value: an invariant naming `%resource`, `%rootResource`,
`%context` or `resolve()` (ref-1 only for a local `#id` reference), and a local reference's
target type. The walk marks itself `tainted` at those points; a value whose walk found no issue
and was not tainted is remembered here, and the next walk of the same value in the same place is
skipped. Issues are never remembered (their expressions name the place), so an invalid value is
walked and reported every time.

A JSON member is remembered whole (`whole`: its array shape, cardinality, items and slices, e.g.
a vital sign's `category` with its VSCat slice: one look-up), unless it is an array holding a null
(whose verdict depends on the `_name` member beside it) or longer than MAX_ITEMS; on a miss, the
items of an array of several are looked up one by one. Invariant results are remembered apart,
by the JSON they read (operand_results.py); `forget_all` empties both.

The key holds the compiled `Element` itself, so it stays alive while remembered (a stored profile
recompiled later has new elements and never meets an old entry). The table is bounded: when full
it starts again empty.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_server.element_memo import Table, key_text

from . import operand_results

MAX_ENTRIES = 20_000
MAX_ITEMS = 32  # a longer array is not kept whole (its text is seldom under 2 KB): item by item
_valid: Table[tuple[Any, ...], bool] = Table(MAX_ENTRIES)

_CONTEXT_TOKENS = ("%resource", "%rootResource", "%context", "resolve(")


KNOWN: tuple[Any, ...] = ("known valid",)


def lookup(
    element: Any,
    type_ref: Any,
    profile_pass: bool,
    warnings: bool,
    resource: Any,
    value: Any,
    whole: bool = False,
) -> tuple[Any, ...] | None:
    """The remembered-value key of `value` walked at `element` (`whole`: the element's whole JSON
    member, its array and cardinality included; else one of its values); None when it is not kept,
    KNOWN when it is known valid."""
    text = key_text(value)
    if text is None:
        return None
    rtype = resource.get("resourceType") if resource.__class__ is dict else None
    key = (element, id(type_ref), profile_pass, warnings, rtype, whole, text)
    return KNOWN if key in _valid else key


def remember(key: tuple[Any, ...]) -> None:
    _valid.put(key, True)


def forget_all() -> None:
    """Empty the table, and the invariant operands' results (benchmarks measure the walk without them)."""
    _valid.clear()
    operand_results.forget_all()


@lru_cache(maxsize=4096)
def reads_context(expression: str) -> bool:
    """Whether an invariant's expression reads outside the value it constrains."""
    return any(token in expression for token in _CONTEXT_TOKENS)


def invariant_reads_context(key: str, expression: str, item: Any) -> bool:
    """Whether evaluating this invariant on `item` depends on more than `item` (ref-1 reads the
    root's contained resources only for a local `#id` reference)."""
    if not reads_context(expression):
        return False
    if key == "ref-1" and item.__class__ is dict:
        ref = item.get("reference")
        return isinstance(ref, str) and ref.startswith("#")
    return True
