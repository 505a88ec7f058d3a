"""Composite search parameter index values (https://hl7.org/fhir/R4/search.html#composite).

A composite expression selects elements (an Observation, each Observation.component, each
useContext...). For the n-th selected element (1-based, counted over the whole resource), every
component expression is evaluated on that element and its values are written, under the COMPOSITE
parameter's param_id and with grp = n, into the table of the component's own type. A composite
match is then: same resource, same param_id, same grp, each component's row matching its part.

An element for which some component yields no row can never match (a composite search value has a
part for every component), so its rows are not written at all: Observation `code-value-concept`
costs nothing on an Observation whose value is a Quantity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.search.extract import Extractor, compile_expression
from fhir_server.search.types import RowSink

ValuesFn = Callable[[list[Any], str, int, int, RowSink, "int | None"], None]


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
) -> int:
    """Index each element's components under grp, grp+1, ...; returns the next free grp."""
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
