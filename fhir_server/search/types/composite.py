"""Composite search parameters (https://hl7.org/fhir/R4/search.html#composite).

Index rows: a composite expression selects elements (an Observation, each Observation.component, each
useContext...). For the n-th selected element (1-based, counted over the whole resource), every
component expression is evaluated on that element and its values are written, under the COMPOSITE
parameter's param_id and with grp = n, into the table of the component's own type. A composite
match is then: same resource, same param_id, same grp, each component's row matching its part.

An element for which some component yields no row can never match (a composite search value has a
part for every component), so its rows are not written at all: Observation `code-value-concept`
costs nothing on an Observation whose value is a Quantity.

Search values are `a$b`: each `$`-separated part is parsed by its component's type; a match needs all parts to match the same
repeating element (same `grp` in the index): the component rows are joined on (resource_pk, grp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import FromClause, Select, and_, or_, select

from fhir_server.fhirpath.compiler import Extractor, compile_expression
from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext, ValuesFn, of_params
from fhir_server.search.values import fail, split
from fhir_server.store import tables


@dataclass(frozen=True, slots=True)
class ComponentPlan:
    """One component: its expression (relative to the composite's element) and its type's values()."""

    expression: str
    root_type: str
    values: ValuesFn
    kind: str  # the index table the component's rows go to

    def extractor(self, focus_type: str) -> Extractor:
        return compile_expression(self.expression, self.root_type, focus_type)


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    components: Sequence[ComponentPlan],
    root: dict[str, Any],
    extractors: Sequence[Extractor] | None = None,
) -> int:
    """Index each element's components under grp, grp+1, ...; returns the next free grp.

    `extractors`: the components' compiled extractors for `fhir_type`, when the caller keeps them."""
    if extractors is None:
        extractors = [c.extractor(fhir_type) for c in components]
    # the later components (values) are the selective ones: look for a missing one from the end
    order = range(len(components) - 1, -1, -1)
    for element in elements:
        found: list[list[tuple[list[Any], str]]] = [[]] * len(components)
        for i in order:
            typed = list(extractors[i].typed_on(element, root))
            if not typed:
                break
            found[i] = typed
        else:
            marks = [len(sink[c.kind]) for c in components]
            for component, typed in zip(components, found, strict=True):
                rows = sink[component.kind]
                before = len(rows)
                for values_found, found_type in typed:
                    component.values(values_found, found_type, param_id, grp, sink, None)
                if len(rows) == before:  # this component gave no row after all: the element cannot match
                    for c, mark in zip(components, marks, strict=True):
                        del sink[c.kind][mark:]
                    break
        grp += 1
    return grp


# ---------------------------------------------------------------- search values


@dataclass(frozen=True)
class CompositeValue:
    """One parsed value per component, in component order."""

    parts: tuple[Any, ...]


def parse_composite(text: str, param: str, parsers: Sequence[Callable[[str], Any]]) -> CompositeValue:
    """Split on unescaped `$` and parse each part with its component's parser."""
    pieces = split(text, "$", param)
    if len(pieces) != len(parsers):
        fail(param, f"{text!r} needs {len(parsers)} parts separated by '$'")
    return CompositeValue(tuple(parse(piece) for parse, piece in zip(parsers, pieces, strict=True)))


# ---------------------------------------------------------------- SQL


def rows(
    ctx: SqlContext, param: Any, values: Sequence[Any], registry: Mapping[str, SearchType]
) -> Select[Any]:
    """The resource_pk of the resources with one element whose components match all parts of a value."""
    parts = []
    for v in values:
        assert isinstance(v, CompositeValue)
        parts.append(
            [
                partial(_component_test, registry[kind], ctx, part)
                for kind, part in zip(param.components, v.parts, strict=True)
            ]
        )
    return _elements(param, parts)


def present(param: Any) -> list[list[Select[Any]]]:
    """The resource_pk of the resources with rows of the composite, as options each of whose SELECTs
    must hold the resource: its own rows, those of its first component (an element has rows only
    when every component gives one); for a composite on the resource itself (`param.joined`), a row
    of every component's parameter. (Separate tests, each of one table: PostgreSQL estimates them
    as it does any other filter's.)"""
    options = []
    if param.ids:
        t = tables.INDEX_TABLES[param.components[0]].alias()
        options.append([select(t.c.resource_pk).where(of_params(t.c.param_id, param.ids))])
    for ids in param.joined:
        each = []
        for kind, i in zip(param.components, ids, strict=True):
            t = tables.INDEX_TABLES[kind].alias()
            each.append(select(t.c.resource_pk).where(t.c.param_id == i))
        options.append(each)
    return options


def _elements(param: Any, values: Sequence[Sequence[Callable[[Any], Any]]]) -> Select[Any]:
    """The resource_pk of the elements whose components pass one value's tests (one per component).

    The composite's own rows (`param.ids`) are the same element when they share (resource_pk,
    param_id, grp); for a composite on the resource itself (`param.joined`) the resource is the one
    element, and a component's rows are those of its own parameter, on the same resource_pk.
    One kind of element: the component tables joined. Both (Observation `combo-code-value-*`):
    the first component's rows, each other component an EXISTS probe; one SELECT either way, not a
    UNION, so that another test's resource_pk can drive it (with a UNION, or a join under an OR of
    both kinds, PostgreSQL read every matching row of the composite before a patient's few;
    bench/README.md "Fourteenth session")."""
    kinds = param.components
    aliases = [tables.INDEX_TABLES[k].alias() for k in kinds]
    first, rest = aliases[0], aliases[1:]
    shapes: list[tuple[Any, list[Callable[[Any], Any]]]] = []
    if param.ids:
        own = [lambda t: and_(t.c.param_id == first.c.param_id, t.c.grp == first.c.grp)] * len(rest)
        shapes.append((of_params(first.c.param_id, param.ids), own))
    for ids in param.joined:
        shapes.append((first.c.param_id == ids[0], [partial(_param_is, i) for i in ids[1:]]))

    def matches(tables_: Sequence[Any], probe: bool, same: Sequence[Callable[[Any], Any]]) -> Any:
        cases = []
        for tests in values:
            others = []
            for t, test, alike in zip(tables_, tests[1:], same, strict=True):
                if probe:
                    others.append(
                        select(t.c.resource_pk)
                        .where(t.c.resource_pk == first.c.resource_pk, alike(t), test(t))
                        .exists()
                    )
                else:
                    others.append(test(t))
            cases.append(and_(tests[0](first), *others))
        return or_(*cases)

    if len(shapes) == 1:
        selects, same = shapes[0]
        joined: FromClause = first
        for a, alike in zip(rest, same, strict=True):
            joined = joined.join(a, and_(a.c.resource_pk == first.c.resource_pk, alike(a)))
        return select(first.c.resource_pk).select_from(joined).where(selects, matches(rest, False, same))
    probes = [tables.INDEX_TABLES[k].alias() for k in kinds[1:]]
    return select(first.c.resource_pk).where(
        or_(*(and_(selects, matches(probes, True, same)) for selects, same in shapes))
    )


def _param_is(param_id: int, t: Any) -> Any:
    return t.c.param_id == param_id


def _component_test(kind: SearchType, ctx: SqlContext, part: Any, t: Any) -> Any:
    assert kind.test is not None
    return kind.test(ctx, None, part, t)


def _parser(p: Parsing) -> Callable[[str], CompositeValue]:
    return partial(parse_composite, param=p.name, parsers=p.components)


COMPOSITE = SearchType(
    "composite",
    frozenset({"missing"}),
    _parser,
    selective=lambda modifier: True,
    rows=rows,
    components=True,
)
