"""The search index rows of the AuditEvents balp.py builds, read from where balp.py puts each value (https://hl7.org/fhir/R4/auditevent.html#search).

`search/index.py` finds a parameter's values by evaluating its FHIRPath expression on the resource;
an AuditEvent built by `balp.audit_event` has a fixed shape, so the elements each parameter reads
are taken here by plain dictionary access and handed to the same `values` function of the
parameter's type (same normalisation, same rows). `rows(event)` equals
`search.index.index_tuples(event)` for every AuditEvent balp.py builds (tests/audit/test_event_index.py
checks it over Hypothesis-generated accesses); a parameter added to AuditEvent that reads an element
balp.py writes must be added to `_READ`, else `plan` refuses to start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..search import parameters
from ..search.index import NOT_INDEXED, VALUES, aux_param_id
from ..search.types import RowSink

Elements = Callable[[dict[str, Any]], list[Any]]


def _agents_who(event: dict[str, Any]) -> list[Any]:
    return [a["who"] for a in event.get("agent", ()) if "who" in a]


def _entities(key: str) -> Elements:
    return lambda event: [e[key] for e in event.get("entity", ()) if key in e]


def _patients(event: dict[str, Any]) -> list[Any]:
    """`agent.who.where(resolve() is Patient) | entity.what.where(resolve() is Patient)`."""
    found = [*_agents_who(event), *_entities("what")(event)]
    return [r for r in found if str(r.get("reference", "")).startswith("Patient/")]


def _top(key: str, many: bool = False) -> Elements:
    if many:
        return lambda event: list(event.get(key, ()))
    return lambda event: [event[key]] if key in event else []


# Each parameter balp.py gives values to: how to read its elements, and their FHIR type (the type
# search/index.py's compiled expression gives them).
_READ: dict[str, tuple[Elements, str]] = {
    "type": (_top("type"), "Coding"),
    "subtype": (_top("subtype", many=True), "Coding"),
    "action": (_top("action"), "code"),
    "outcome": (_top("outcome"), "code"),
    "date": (_top("recorded"), "instant"),
    "agent": (_agents_who, "Reference"),
    "altid": (lambda event: [a["altId"] for a in event.get("agent", ()) if "altId" in a], "string"),
    "source": (lambda event: [event["source"]["observer"]] if "source" in event else [], "Reference"),
    "entity": (_entities("what"), "Reference"),
    "entity-type": (_entities("type"), "Coding"),
    "entity-role": (_entities("role"), "Coding"),
    "patient": (_patients, "Reference"),
}
# Parameters on elements balp.py never writes (agent.network, agent.name, agent.role, agent.policy,
# entity.name, source.site, meta.profile/security/source/tag): no rows; `_list` indexes Lists only.
_NEVER_WRITTEN = frozenset(
    {"address", "agent-name", "agent-role", "policy", "entity-name", "site", "_profile", "_security"}
    | {"_source", "_tag", "_list"}
)
Step = tuple[Elements, str, Callable[..., None], int, int | None, bool]
# The rows of one coded element (most are balp.py's constants: event type, subtype, entity type and
# role), by (parameter id, element as a tuple): a token row normalises its text, which costs more
# than the lookup. Bounded: cleared when full.
_MEMO: dict[tuple[int, Any], list[tuple[str, tuple[Any, ...]]]] = {}
_MEMO_SIZE = 4096


@functools.cache
def plan() -> tuple[Step, ...]:
    """Per parameter: its elements, their type, its type's `values`, its id and auxiliary id."""
    steps: list[Step] = []
    for code, sp in parameters.for_type("AuditEvent").items():
        if code in NOT_INDEXED or code in _NEVER_WRITTEN:
            continue
        if code not in _READ or sp.kind not in VALUES:
            raise RuntimeError(f"AuditEvent search parameter {code!r} is not indexed by audit/event_index.py")
        read, fhir_type = _READ[code]
        memo = sp.kind == "token"
        steps.append((read, fhir_type, VALUES[sp.kind], sp.param_id, aux_param_id(sp), memo))
    return tuple(steps)


def rows(event: dict[str, Any]) -> RowSink:
    """The index rows of an AuditEvent built by balp.py, as `search.index.index_tuples` gives them."""
    sink: RowSink = {"token": [], "reference": [], "date": [], "string": [], "uri": []}
    for read, fhir_type, values, pid, aux, memo in plan():
        found = read(event)
        if not found:
            continue
        if not memo:
            values(found, fhir_type, pid, 0, sink, aux)
            continue
        for element in found:
            key = (pid, element if element.__class__ is str else tuple(element.items()))
            try:
                known = _MEMO.get(key)
            except TypeError:  # a value that is not hashable (not one of balp.py's shapes)
                values([element], fhir_type, pid, 0, sink, aux)
                continue
            if known is None:
                one: RowSink = {kind: [] for kind in sink}
                values([element], fhir_type, pid, 0, one, aux)
                known = [(kind, row) for kind, kind_rows in one.items() for row in kind_rows]
                if len(_MEMO) >= _MEMO_SIZE:
                    _MEMO.clear()
                _MEMO[key] = known
            for kind, row in known:
                sink[kind].append(row)
    return {kind: list(dict.fromkeys(found)) for kind, found in sink.items() if found}
