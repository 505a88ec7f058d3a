"""Search index rows of a resource (https://hl7.org/fhir/R4/search.html): one entry per indexed value.

Contract used by the store: `index_rows(resource)` takes the resource as a dict (as stored) and
returns {table kind: [row dict, ...]} where the kinds are the keys of store.tables.INDEX_TABLES and
each row dict holds that table's columns except `resource_pk`; kinds without rows are left out and
identical rows are written once. The rules per parameter type are in docs/index-rows.md and in
search/types/*.py; `_id` and `_lastUpdated` are served from the resource table and not indexed.

For speed, each resource type's parameters are compiled once into a plan (see `plan`): per
parameter, the compiled extractor's branches and the values() of the parameter's type.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.element_memo import Table, key_text
from fhir_server.fhirpath import compiler
from fhir_server.search import observation_values, parameters
from fhir_server.search.parameters import SearchParam, param_id
from fhir_server.search.types import REGISTRY, RowSink, composite
from fhir_server.search.types.base import ValuesFn
from fhir_server.store.tables import INDEX_TABLES

IndexRows = dict[str, list[dict[str, Any]]]
Step = Callable[[dict[str, Any], RowSink], None]

# Column names of each index table in row-tuple order (everything but resource_pk and a row key).
COLUMNS: dict[str, tuple[str, ...]] = {
    kind: tuple(c.name for c in table.columns if c.name != "resource_pk" and not c.primary_key)
    for kind, table in INDEX_TABLES.items()
}
# The index rows of each type with a table of its own (search/types/<type>.py `values`).
VALUES: dict[str, ValuesFn] = {code: t.values for code, t in REGISTRY.items() if t.values is not None}
NOT_INDEXED = frozenset(("_id", "_lastUpdated"))  # served from the resource table
# Rows derived from a resource's other index rows, by resource type: run after every other step.
DERIVED: dict[str, tuple[Step, ...]] = {observation_values.RESOURCE_TYPE: (observation_values.rows,)}


def aux_param_id(sp: SearchParam) -> int | None:
    """The id under which a parameter's second kind of row goes (a reference's identifier), if any."""
    suffix = REGISTRY[sp.kind].aux_suffix
    return None if suffix is None else param_id(sp.resource_type, sp.code + suffix)


def _fallback_step(sp: SearchParam, extractor: compiler.Extractor) -> Step:
    values = VALUES[sp.kind]
    pid = sp.param_id
    aux = aux_param_id(sp)

    def fallback(resource: dict[str, Any], sink: RowSink) -> None:
        for found, fhir_type in extractor.typed_on(resource, resource):
            values(found, fhir_type, pid, 0, sink, aux)

    return fallback


_READS_ROOT = ("%resource", "%rootResource", "%context")


def _branch_step(sp: SearchParam, fn: compiler.Fn, fhir_type: str) -> Step:
    values = VALUES[sp.kind]
    pid = sp.param_id
    aux = aux_param_id(sp)

    def step(resource: dict[str, Any], sink: RowSink) -> None:
        found = fn([resource], resource)
        if found:
            values(found, fhir_type, pid, 0, sink, aux)

    # A branch that starts with a path step reads only that top-level element (resolve() reads the
    # reference's text), unless its expression names the root: then its rows depend on that element alone.
    step.element_only = not any(v in (sp.expression or "") for v in _READS_ROOT)  # type: ignore[attr-defined]
    return step


def _composite_step(sp: SearchParam, extractor: compiler.Extractor) -> Step | None:
    if not sp.components or any(c.type not in VALUES for c in sp.components):
        return None
    plans = tuple(
        composite.ComponentPlan(c.expression, sp.resource_type, VALUES[c.type], c.type) for c in sp.components
    )
    pid = sp.param_id
    by_type: dict[str, list[compiler.Extractor]] = {}  # the components' extractors per element type

    def step(resource: dict[str, Any], sink: RowSink) -> None:
        grp = 1
        for found, fhir_type in extractor.typed_on(resource, resource):
            extractors = by_type.get(fhir_type)
            if extractors is None:
                extractors = by_type[fhir_type] = [c.extractor(fhir_type) for c in plans]
            grp = composite.values(found, fhir_type, pid, grp, sink, plans, resource, extractors)

    return step


def _composite_gate(sp: SearchParam, extractor: compiler.Extractor) -> str | None:
    """A top-level element without which a composite parameter has no row, if there is one.

    `Observation.component` selects nothing without `component`. The resource itself
    (`code-value-quantity`: `Observation`) has a row only when every component gives one, so a
    component that reads a single top-level element gates it (`value.as(Quantity)`: `valueQuantity`):
    most Observations skip the composites of the value types they do not have."""
    if extractor.branches is None or len(extractor.branches) != 1:
        return None
    fn, focus = extractor.branches[0]
    key = compiler.first_key(fn)
    if key is not None:
        return key
    if sp.expression != sp.resource_type:
        return None
    for component in reversed(sp.components):  # the values are the selective components
        compiled = compiler.compile_expression(component.expression, sp.resource_type, focus)
        if compiled.branches is None:  # not compiled to branches: reads anything
            continue
        keys = {compiler.first_key(f) for f, _ in compiled.branches}
        if len(keys) == 1 and None not in keys:
            return keys.pop()
    return None


def _document_step(sp: SearchParam) -> tuple[str | None, Step] | None:
    """The step of a parameter indexed from the whole resource (full text), and the key it needs."""
    search_type = REGISTRY.get(sp.kind)
    if sp.expression or search_type is None or search_type.documents is None:
        return None
    key, document = search_type.documents(sp.code)
    pid = sp.param_id

    def step(resource: dict[str, Any], sink: RowSink) -> None:
        document(resource, pid, sink)

    return key, step


@dataclass(frozen=True, slots=True)
class Plan:
    """The indexing steps of one resource type: those that run only when the resource has a given
    top-level element (most parameters read elements a resource does not have), the rest, and
    those that derive rows from all the others (`DERIVED`), run last."""

    by_key: dict[str, tuple[Step, ...]]
    always: tuple[Step, ...]
    last: tuple[Step, ...] = ()
    remembered: frozenset[str] = frozenset()  # keys whose steps read that element alone
    gated: tuple[tuple[str, Step], ...] = ()  # (key, step): composites that give no row without key


@functools.cache
def plan(resource_type: str) -> Plan:
    """The compiled indexing steps of one resource type (built once per type).

    A simple parameter gives one step per branch of its compiled expression, keyed by the first
    element the branch reads; composite and fallback parameters give one step that always runs;
    full text (`documents` of its type) one step, keyed by the element it needs.
    """
    by_key: dict[str, list[Step]] = {}
    always: list[Step] = []
    gated: list[tuple[str, Step]] = []
    for sp in parameters.for_type(resource_type).values():
        whole = _document_step(sp)
        if whole is not None:
            key, doc_step = whole
            (always if key is None else by_key.setdefault(key, [])).append(doc_step)
            continue
        if sp.code in NOT_INDEXED or not sp.expression or sp.parts or sp.joined:
            continue  # parts, joined: searched over other parameters' rows
        extractor = compiler.compile_expression(sp.expression, resource_type)
        if sp.kind in REGISTRY and REGISTRY[sp.kind].components:
            step = _composite_step(sp, extractor)
            if step is not None:
                gate = _composite_gate(sp, extractor)
                if gate is None:
                    always.append(step)
                else:
                    gated.append((gate, step))
        elif sp.kind not in VALUES:
            continue
        elif extractor.branches is None:
            always.append(_fallback_step(sp, extractor))
        else:
            for fn, fhir_type in extractor.branches:
                key = compiler.first_key(fn)
                target = always if key is None else by_key.setdefault(key, [])
                target.append(_branch_step(sp, fn, fhir_type))
    remembered = frozenset(
        k for k, steps in by_key.items() if all(getattr(s, "element_only", False) for s in steps)
    )
    return Plan(
        {k: tuple(v) for k, v in by_key.items()},
        tuple(always),
        DERIVED.get(resource_type, ()),
        remembered,
        tuple(gated),
    )


def index_rows(resource: dict[str, Any]) -> IndexRows:
    """Every index row of a resource, by table kind (see the module docstring)."""
    return {
        kind: [dict(zip(COLUMNS[kind], row)) for row in rows]  # noqa: B905
        for kind, rows in index_tuples(resource).items()
    }


def index_tuples(resource: dict[str, Any]) -> RowSink:
    """`index_rows` as row tuples in COLUMNS order (what the store writes, without building dicts)."""
    resource_type = resource.get("resourceType")
    if resource_type.__class__ is not str:
        return {}
    steps = plan(resource_type)
    sink: RowSink = {kind: [] for kind in COLUMNS}
    for step in steps.always:
        step(resource, sink)
    for key, step in steps.gated:
        if key in resource:
            step(resource, sink)
    by_key, remembered = steps.by_key, _remembered(resource_type)
    for key in resource:
        keyed = by_key.get(key)
        if keyed is None:
            continue
        if key in remembered:
            _element_rows(resource_type, key, resource, keyed, sink, remembered)
        else:
            for step in keyed:
                step(resource, sink)
    for step in steps.last:
        step(resource, sink)
    return _distinct(sink)


def _distinct(sink: RowSink) -> RowSink:
    """Each kind's distinct rows, in order (a single row, most kinds of most resources, needs no hashing)."""
    return {
        kind: rows if len(rows) == 1 else list(dict.fromkeys(rows)) for kind, rows in sink.items() if rows
    }


# Rows of elements by their JSON (see `_element_rows`): a bounded table, emptied when full. A key
# whose first `_PROBE` lookups found less than a fifth remembered (identifiers, times) is not
# remembered any more in this process: each miss costs its JSON and a table entry.
_ELEMENT_ROWS: Table[tuple[str, str, str], tuple[tuple[str, list[tuple[Any, ...]]], ...]] = Table(20_000)
_PROBE = 2_000
_probes: dict[tuple[str, str], list[int]] = {}  # (type, key) -> [lookups, found]


@functools.cache
def _remembered(resource_type: str) -> set[str]:
    """The keys of a type whose rows are remembered (the plan's, less those that do not repeat)."""
    return set(plan(resource_type).remembered)


def _element_rows(
    resource_type: str,
    key: str,
    resource: dict[str, Any],
    steps: tuple[Step, ...],
    sink: RowSink,
    remembered: set[str],
) -> None:
    """Append the rows of the steps keyed by `key`, which read `resource[key]` alone: remembered by
    that element's JSON, since wearable and ingest records repeat their code, category, subject,
    device and profile (13% of `index_tuples` for Apple Health Observations)."""
    text = key_text(resource[key])  # None: not remembered (element_memo), e.g. a Provenance's
    if text is None:  # thousand targets (each new: a table of them grew by 300 MB per million)
        for step in steps:
            step(resource, sink)
        return
    memo_key = (resource_type, key, text)
    rows = _ELEMENT_ROWS.get(memo_key)
    probe = _probes.get((resource_type, key))
    if probe is None:
        probe = _probes[(resource_type, key)] = [0, 0]
    if probe[0] < _PROBE:
        probe[0] += 1
        probe[1] += rows is not None
        if probe[0] == _PROBE and probe[1] * 5 < _PROBE:
            remembered.discard(key)
    if rows is None:
        own: RowSink = defaultdict(list)
        for step in steps:
            step(resource, own)
        rows = _ELEMENT_ROWS.put(memo_key, tuple((kind, found) for kind, found in own.items() if found))
    for kind, found in rows:
        sink[kind].extend(found)


@functools.cache
def _param_steps(resource_type: str, code: str) -> tuple[Step, ...]:
    """The indexing steps of one parameter of one type (`plan`'s, for that parameter alone)."""
    sp = parameters.get(resource_type, code)
    whole = None if sp is None else _document_step(sp)
    if whole is not None:
        return (whole[1],)
    if sp is None or sp.code in NOT_INDEXED or not sp.expression or sp.kind not in VALUES:
        return ()
    extractor = compiler.compile_expression(sp.expression, resource_type)
    if extractor.branches is None:
        return (_fallback_step(sp, extractor),)
    return tuple(_branch_step(sp, fn, fhir_type) for fn, fhir_type in extractor.branches)


def param_tuples(resource: dict[str, Any], code: str) -> RowSink:
    """The index rows `index_tuples` gives a resource for the parameter `code` alone."""
    resource_type = resource.get("resourceType")
    if resource_type.__class__ is not str:
        return {}
    sink: RowSink = {kind: [] for kind in COLUMNS}
    for step in _param_steps(resource_type, code):
        step(resource, sink)
    return _distinct(sink)
