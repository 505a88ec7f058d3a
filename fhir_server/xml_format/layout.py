"""Where each JSON property goes in FHIR XML, derived from the compiled snapshots (https://hl7.org/fhir/R4/xml.html).

The element order is the order of the StructureDefinition snapshot (`profiles/snapshot.py` keeps
children in snapshot order); elements whose definition has `representation: xmlAttr` (an element's
`id`, `Extension.url`) are attributes; a complex value is described by its backbone element, the
element a `contentReference` names, or its datatype's own definition.
"""

from __future__ import annotations

from functools import cache

from profiles import primitives
from profiles.snapshot import Definition, Element, TypeRef, for_type

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
RESOURCE_CODES = frozenset({"Resource", "DomainResource"})
PRIMITIVES = primitives.NAMES

_orders: dict[int, tuple[Element, dict[str, int]]] = {}  # id(owner) -> (owner kept alive, key order)


def order(owner: Element) -> dict[str, int]:
    """Position of each JSON key of `owner`'s children in the XML element order."""
    hit = _orders.get(id(owner))
    if hit is None or hit[0] is not owner:
        hit = (owner, {key: n for n, key in enumerate(owner.keys)})
        _orders[id(owner)] = hit
    return hit[1]


def resource_definition(type_name: str) -> Definition | None:
    """The base definition of a resource type (None for datatypes and unknown names)."""
    if not type_name[:1].isupper():
        return None
    definition = for_type(type_name)
    return definition if definition is not None and definition.kind == "resource" else None


def object_owner(e: Element, tref: TypeRef) -> Element | None:
    """The element whose children describe a complex value of `e` (typed `tref`), or None if unknown."""
    if e.children and len(e.types) <= 1:
        return e  # a backbone element: its children are inline
    if e.content_ref is not None:
        path = e.content_ref.split("#", 1)[-1]
        definition = for_type(path.split(".", 1)[0])
        return definition.by_path.get(path) if definition is not None else None
    root = _datatype_roots.get(tref.code)
    if root is None:
        dt = for_type(tref.code)
        if dt is None:
            return None
        root = _datatype_roots[tref.code] = dt.root
    return root


_datatype_roots: dict[str, Element] = {}  # base definitions are compiled once per process


@cache
def element_root() -> Element:
    """`Element`'s definition: the `id` and `extension` of a primitive value (the JSON `_name` twin)."""
    definition = for_type("Element")
    assert definition is not None, "the spec package has no Element definition"
    return definition.root
