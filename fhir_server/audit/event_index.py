"""The search index rows of the AuditEvents balp.py builds, read from where balp.py puts each value (https://hl7.org/fhir/R4/auditevent.html#search).

`search/index.py` finds a parameter's values by evaluating its FHIRPath expression on the resource;
an AuditEvent built by `balp.audit_event` has a fixed shape, so the elements each parameter reads
are taken here by plain dictionary access and handed to the same `values` function of the
parameter's type (same normalisation, same rows). `rows(event)` equals
`search.index.index_tuples(event)` for every AuditEvent balp.py builds (tests/audit/test_event_index.py
checks it over Hypothesis-generated accesses); a parameter added to AuditEvent that reads an element
balp.py writes must be added to `_HEAD` or `_OWN`, else `plan` refuses to start.

Most of an AuditEvent (type, subtype, action, outcome, agents, source: `HEAD`) is the same for every
access of one caller and interaction, so the rows of those elements are worked out once per distinct
head (keyed by its JSON) and reused; only the time and the entities are indexed per event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from ..search import parameters
from ..search.index import NOT_INDEXED, VALUES, aux_param_id
from ..search.types import RowSink

Elements = Callable[[dict[str, Any]], list[Any]]


def _agents_who(event: dict[str, Any]) -> list[Any]:
    return [a["who"] for a in event.get("agent", ()) if "who" in a]


def _entities(key: str) -> Elements:
    return lambda event: [e[key] for e in event.get("entity", ()) if key in e]


_entity_what = _entities("what")


def _is_patient(found: list[Any]) -> list[Any]:
    """The references `where(resolve() is Patient)` keeps of balp.py's (all local or displays)."""
    return [r for r in found if str(r.get("reference", "")).startswith("Patient/")]


def _top(key: str, many: bool = False) -> Elements:
    if many:
        return lambda event: list(event.get(key, ()))
    return lambda event: [event[key]] if key in event else []


# The elements of an AuditEvent that balp.py derives from the caller, the interaction and its
# outcome alone: the readers in `_HEAD` are given only these (a dict of them, the "head").
HEAD = ("type", "subtype", "action", "outcome", "agent", "source")
# Each parameter balp.py gives values to: how to read its elements from the head (`_HEAD`) and from
# the rest of the event (`_OWN`), and their FHIR type (the type search/index.py's compiled
# expression gives them). `patient` reads both (`agent.who | entity.what`, Patients only).
_HEAD: dict[str, Elements] = {
    "type": _top("type"),
    "subtype": _top("subtype", many=True),
    "action": _top("action"),
    "outcome": _top("outcome"),
    "agent": _agents_who,
    "altid": lambda head: [a["altId"] for a in head.get("agent", ()) if "altId" in a],
    "source": lambda head: [head["source"]["observer"]] if "source" in head else [],
    "patient": lambda head: _is_patient(_agents_who(head)),
}
_OWN: dict[str, Elements] = {
    "date": _top("recorded"),
    "entity": _entity_what,
    "entity-type": _entities("type"),
    "entity-role": _entities("role"),
    "patient": lambda event: _is_patient(_entity_what(event)),
}
_TYPE = {
    "type": "Coding",
    "subtype": "Coding",
    "action": "code",
    "outcome": "code",
    "date": "instant",
    "agent": "Reference",
    "altid": "string",
    "source": "Reference",
    "entity": "Reference",
    "entity-type": "Coding",
    "entity-role": "Coding",
    "patient": "Reference",
}
# Parameters on elements balp.py never writes (agent.network, agent.name, agent.role, agent.policy,
# entity.name, source.site, meta.profile/security/source/tag): no rows; `_list` indexes Lists only.
_NEVER_WRITTEN = frozenset(
    {"address", "agent-name", "agent-role", "policy", "entity-name", "site", "_profile", "_security"}
    | {"_source", "_tag", "_list"}
)
Step = tuple[Elements, str, Callable[..., None], int, int | None, bool]
# The rows of the coded elements one parameter finds (balp.py's constants, mostly: event type,
# subtype, entity types and roles), by (parameter id, *elements as tuples): a token row normalises
# its text, which costs more than the lookup; and the rows of each head, by its JSON. Bounded:
# cleared when full.
_MEMO: dict[tuple[Any, ...], RowSink] = {}
_MEMO_SIZE = 4096
_HEADS: dict[bytes, RowSink] = {}
_HEADS_SIZE = 1024


@functools.cache
def plan() -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """Per parameter, on the head and on the rest: its elements, their type, its type's `values`,
    its id and auxiliary id, and whether its rows are memoised by element (tokens)."""
    head: list[Step] = []
    own: list[Step] = []
    for code, sp in parameters.for_type("AuditEvent").items():
        if code in NOT_INDEXED or code in _NEVER_WRITTEN:
            continue
        if code not in _TYPE or sp.kind not in VALUES:
            raise RuntimeError(f"AuditEvent search parameter {code!r} is not indexed by audit/event_index.py")
        memo = sp.kind == "token"
        for readers, steps in ((_HEAD, head), (_OWN, own)):
            if code in readers:
                steps.append(
                    (readers[code], _TYPE[code], VALUES[sp.kind], sp.param_id, aux_param_id(sp), memo)
                )
    return tuple(head), tuple(own)


def rows(event: dict[str, Any]) -> RowSink:
    """The index rows of an AuditEvent built by balp.py, as `search.index.index_tuples` gives them."""
    head_steps, own_steps = plan()
    head = {key: event[key] for key in HEAD if key in event}
    key = orjson.dumps(head)
    known = _HEADS.get(key)
    if known is None:
        known = _remember(_HEADS, _HEADS_SIZE, key, _run(head_steps, head))
    sink = _run(own_steps, event)
    for kind, kind_rows in known.items():
        sink[kind] += kind_rows
    return {kind: list(dict.fromkeys(found)) for kind, found in sink.items() if found}


def _remember(memo: dict[Any, RowSink], size: int, key: Any, sink: RowSink) -> RowSink:
    """Keep the rows of `sink` (those of some kinds) under `key` in a memo of at most `size`."""
    if len(memo) >= size:
        memo.clear()
    memo[key] = {kind: kind_rows for kind, kind_rows in sink.items() if kind_rows}
    return memo[key]


def _run(steps: tuple[Step, ...], elements: dict[str, Any]) -> RowSink:
    """The rows `steps` give for the elements of an event (or of its head)."""
    sink: RowSink = {"token": [], "reference": [], "date": [], "string": [], "uri": []}
    for read, fhir_type, values, pid, aux, memo in steps:
        found = read(elements)
        if not found:
            continue
        if memo:
            try:
                key = (pid, *[e if e.__class__ is str else tuple(e.items()) for e in found])
                known = _MEMO.get(key)
            except (TypeError, AttributeError):  # not hashable (not one of balp.py's shapes)
                known = None
                key = None
            if key is not None:
                if known is None:
                    one: RowSink = {kind: [] for kind in sink}
                    values(found, fhir_type, pid, 0, one, aux)
                    known = _remember(_MEMO, _MEMO_SIZE, key, one)
                for kind, kind_rows in known.items():
                    sink[kind] += kind_rows
                continue
        values(found, fhir_type, pid, 0, sink, aux)
    return sink
