"""A StructureDefinition snapshot compiled once into a tree of element checkers (https://hl7.org/fhir/R4/elementdefinition.html).

Each `Element` holds what the walk (`profiles/walk.py`) needs, precomputed: JSON names (choice
elements `value[x]` expand to `valueQuantity`, ...), cardinality, allowed types, fixed/pattern
value, binding, reference targets, compiled invariants, slicing and slices. Children listed in the
snapshot (backbone elements, or a profile's constraints on a datatype's parts) are kept inline;
otherwise a complex datatype's children come from that datatype's own compiled definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import definitions, invariants, primitives

UNBOUNDED = 1 << 30


@dataclass(eq=False, slots=True)
class TypeRef:
    """One allowed type of an element: the FHIR type name and, for references, the target types."""

    code: str
    targets: frozenset[str] | None = None  # None: any resource type
    profiles: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class Element:
    """One ElementDefinition, compiled."""

    path: str  # e.g. Observation.value[x]
    name: str  # last segment without [x]
    min: int
    max: int
    array: bool  # the base definition allows more than one: JSON array
    types: tuple[TypeRef, ...]
    choice: bool
    type_path: str  # FHIRPath type of a value: a datatype name, or the path of a backbone element
    fixed: Any = None
    pattern: Any = None
    binding: tuple[str, str] | None = None  # (strength, value set canonical)
    invariants: tuple[invariants.Invariant, ...] = ()
    content_ref: str | None = None
    slice_name: str | None = None
    discriminators: tuple[tuple[str, str], ...] = ()  # (type, path)
    slicing_closed: bool = False
    slices: list[Element] = field(default_factory=list)
    children: dict[str, Element] = field(default_factory=dict)
    keys: dict[str, tuple[Element, TypeRef]] = field(default_factory=dict)  # JSON name -> (child, type)
    required: tuple[Element, ...] = ()
    # each required child with the JSON names that make it present (`_name` too for a primitive)
    required_names: tuple[tuple[Element, tuple[str, ...]], ...] = ()
    xml_attr: bool = False  # representation xmlAttr: an XML attribute (element id, Extension.url)

    def has_own_rules(self) -> bool:
        """Whether a value here is checked for more than its type, format and count: children or a
        content reference, slices, a fixed value, a pattern, invariants (bindings aside)."""
        return bool(
            self.children
            or self.content_ref is not None
            or self.slices
            or self.fixed is not None
            or self.pattern is not None
            or self.invariants
        )


@dataclass(eq=False, slots=True)
class Definition:
    """A compiled StructureDefinition: its root element, url, type and kind."""

    url: str
    type: str
    kind: str
    root: Element
    profile: bool
    by_path: dict[str, Element]


def _max(text: Any) -> int:
    return UNBOUNDED if text == "*" else int(text or 0)


def _json_names(e: Element) -> dict[str, tuple[Element, TypeRef]]:
    if not e.choice:
        return {e.name: (e, e.types[0] if e.types else TypeRef("Element"))}
    return {e.name + t.code[:1].upper() + t.code[1:]: (e, t) for t in e.types}


def _type_refs(raw: list[dict[str, Any]]) -> tuple[TypeRef, ...]:
    out = []
    for t in raw:
        code = primitives.fhir_type(t)
        targets = None
        tp = t.get("targetProfile")
        if code in ("Reference", "canonical") and tp:
            names = {_target_type(p) for p in tp}
            targets = None if "Resource" in names or None in names else frozenset(n for n in names if n)
        out.append(TypeRef(code, targets, tuple(t.get("profile", ()))))
    return tuple(out)


def _target_type(profile: str) -> str | None:
    """The resource type a targetProfile constrains (None: unknown profile, so any type)."""
    tail = profile.split("|", 1)[0].rsplit("/", 1)[-1]
    if profile.startswith(definitions.BASE) and tail[:1].isupper():
        return tail
    sd = definitions.find(profile)
    return str(sd["type"]) if sd is not None and sd.get("type") else None


@lru_cache(maxsize=1024)
def is_base(url: str) -> bool:
    """Whether `url` names a base resource or datatype definition (derivation specialization)."""
    sd = definitions.find(url) if url.startswith(definitions.BASE) else None
    return sd is not None and sd.get("derivation", "specialization") == "specialization"


def _element(raw: dict[str, Any], root_type: str, profile: bool = False) -> Element:
    path = raw["path"]
    last = path.rsplit(".", 1)[-1]
    choice = last.endswith("[x]")
    types = _type_refs(raw.get("type", ()))
    base_max = _max((raw.get("base") or {}).get("max", raw.get("max")))
    fixed = next((v for k, v in raw.items() if k.startswith("fixed")), None)
    pattern = next((v for k, v in raw.items() if k.startswith("pattern")), None)
    binding = raw.get("binding")
    vs = binding.get("valueSet") if isinstance(binding, dict) else None
    slicing = raw.get("slicing") or {}
    codes = {t.code for t in types}
    if "." not in path:
        type_path = root_type
    elif raw.get("contentReference"):
        type_path = raw["contentReference"].split("#", 1)[-1]  # the element it reuses
    elif len(codes) == 1 and next(iter(codes)) not in ("BackboneElement", "Element"):
        type_path = next(iter(codes))
    else:
        type_path = (
            (raw.get("base") or {}).get("path", path) if codes <= {"BackboneElement", "Element"} else ""
        )
    return Element(
        path=path,
        name=last[:-3] if choice else last,
        min=int(raw.get("min", 0)),
        max=_max(raw.get("max", "*")),
        array=base_max > 1 or "." not in path,
        types=types,
        choice=choice,
        type_path=type_path,
        fixed=fixed,
        pattern=pattern,
        binding=(str(binding["strength"]), vs) if vs and isinstance(binding, dict) else None,
        # a profile's walk skips the invariants its base definitions hold (the base pass checks them)
        invariants=invariants.compile_constraints(raw.get("constraint", []), is_base if profile else _never),
        content_ref=raw.get("contentReference"),
        slice_name=raw.get("sliceName"),
        discriminators=tuple((d["type"], d["path"]) for d in slicing.get("discriminator", ())),
        slicing_closed=slicing.get("rules") == "closed",
        xml_attr="xmlAttr" in (raw.get("representation") or ()),
    )


def _never(_: str) -> bool:
    return False


def _finish(e: Element) -> None:
    for child in e.children.values():
        e.keys.update(_json_names(child))
        _finish(child)
    e.required = tuple(c for c in e.children.values() if c.min > 0)
    e.required_names = tuple(
        (
            c,
            tuple(n for n, (k, _t) in e.keys.items() if k is c)
            + tuple("_" + n for n, (k, t) in e.keys.items() if k is c and t.code in primitives.NAMES),
        )
        for c in e.required
    )
    for s in e.slices:
        _finish(s)


def compile_snapshot(sd: dict[str, Any]) -> Definition:
    """Compile a StructureDefinition's snapshot into an element tree."""
    elements = sd["snapshot"]["element"]
    root_type = sd.get("type") or elements[0]["path"]
    profile = sd.get("derivation") == "constraint"
    current: dict[str, Element] = {}  # path -> the element (or slice) children attach to now
    unsliced: dict[str, Element] = {}  # path -> the element its slices belong to
    by_path: dict[str, Element] = {}
    root: Element | None = None
    for raw in elements:
        e = _element(raw, root_type, profile)
        path = e.path
        if root is None:
            root = e
            current[path] = e
            by_path[path] = e
            continue
        if e.slice_name is not None:
            sliced = unsliced.get(path)
            if sliced is not None and "/" not in e.slice_name:  # re-slices are not checked
                e.array = sliced.array
                sliced.slices.append(e)
                current[path] = e  # the slice's own children attach below it
                _drop_below(current, path)
            continue
        parent = current.get(path.rsplit(".", 1)[0])
        if parent is None:
            continue  # children of an element we do not track (e.g. below a type slice)
        parent.children[e.name] = e
        current[path] = unsliced[path] = e
        _drop_below(current, path)
        _drop_below(unsliced, path)
        by_path.setdefault(path, e)
    assert root is not None
    _finish(root)
    return Definition(sd["url"], root_type, sd.get("kind", ""), root, profile, by_path)


def _drop_below(current: dict[str, Element], path: str) -> None:
    prefix = path + "."
    for key in [k for k in current if k.startswith(prefix)]:
        del current[key]


_compiled: dict[str, Definition] = {}


def compiled(url: str) -> Definition | None:
    """The compiled definition of `url`, compiled once per process; None when unknown."""
    url = url.split("|", 1)[0]
    found = _compiled.get(url)
    if found is None:
        sd = definitions.find(url)
        if sd is None or not isinstance(sd.get("snapshot"), dict):
            return None
        found = _compiled.setdefault(url, compile_snapshot(dict(sd)))
    return found


def forget(url: str) -> None:
    """Drop a compiled definition (its StructureDefinition changed)."""
    _compiled.pop(url.split("|", 1)[0], None)
    _by_type.clear()


_by_type: dict[str, Definition] = {}


def for_type(type_name: str) -> Definition | None:
    """The compiled base definition of a resource or datatype."""
    found = _by_type.get(type_name)
    if found is None:
        found = compiled(definitions.base_url(type_name))
        if found is not None:
            _by_type[type_name] = found
    return found
