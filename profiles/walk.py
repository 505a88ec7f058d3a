"""The walk of a resource's JSON against a compiled definition (https://hl7.org/fhir/R4/validation.html).

One pass collects every problem as an `Issue` (severity, code, FHIRPath expression): unknown
elements, JSON shape (array or not), cardinality, primitive formats, fixed and pattern values,
bindings, reference targets, slices, invariants, and the narrative rules (txt-1). Nested resources
(contained, Bundle entries, Parameters) are walked against their own base definitions.
"""

from __future__ import annotations

from typing import Any

from fhir_server import narrative
from fhir_server.errors import Issue

from . import bindings, flat_objects, primitives, valid_subtrees
from .snapshot import Definition, Element, TypeRef, compiled, for_type

_RESOURCE_TYPES = frozenset({"Resource", "DomainResource"})


class Walk:
    """The state of one validation: issues found and whether warnings are wanted."""

    __slots__ = ("issues", "profile_pass", "tainted", "warnings")

    def __init__(self, warnings: bool = False, profile_pass: bool = False) -> None:
        self.issues: list[Issue] = []
        self.warnings = warnings
        self.profile_pass = profile_pass
        # a rule read outside the value being walked (valid_subtrees.py): its result is not kept
        self.tainted = False

    def error(self, message: str, code: str, where: str) -> None:
        self.issues.append(Issue(message, code, (where,)))

    def warn(self, message: str, code: str, where: str) -> None:
        if self.warnings:
            self.issues.append(Issue(message, code, (where,), severity="warning"))

    # ---------------------------------------------------------------- resources

    def resource(self, definition: Definition, res: Any, where: str, root: Any) -> None:
        """Walk a resource (the root, a contained one or a Bundle entry's) against `definition`."""
        if not isinstance(res, dict):
            self.error("A resource must be a JSON object", "structure", where)
            return
        root = root if root is not None else res
        self.obj(definition.root, definition.root.keys, res, where, res, root)
        for inv in definition.root.invariants:
            self.invariant(inv, res, definition.root.type_path, where, res, root)

    def nested_resource(self, value: Any, where: str, root: Any) -> None:
        if not isinstance(value, dict):
            self.error("A resource must be a JSON object", "structure", where)
            return
        rtype = value.get("resourceType")
        definition = for_type(rtype) if isinstance(rtype, str) and rtype[:1].isupper() else None
        if definition is None or definition.kind != "resource":
            self.error(f"Unknown resource type '{rtype}'", "structure", f"{where}.resourceType")
            return
        self.resource(definition, value, where, root)

    # ---------------------------------------------------------------- objects

    def obj(
        self,
        owner: Element,
        keys: dict[str, tuple[Element, TypeRef]],
        value: dict[str, Any],
        where: str,
        resource: Any,
        root: Any,
    ) -> None:
        if flat_objects.accepts(owner, self.warnings, value):
            return  # members of plain primitives, each of a valid format: nothing to report
        choice_seen: dict[int, str] = {}
        is_resource = "." not in owner.path and "resourceType" in value
        for key, item in value.items():
            hit = keys.get(key)
            if hit is None:
                if key == "resourceType" and is_resource:
                    continue
                if key[:1] == "_":
                    hit = keys.get(key[1:])
                    if hit is None or hit[1].code not in primitives.NAMES:
                        self.error(f"Unknown element '{key}'", "structure", f"{where}.{key}")
                    else:
                        self.primitive_extension(item, f"{where}.{key}", hit[0].array)
                    continue
                if not self.profile_pass:  # the base pass reports unknown elements
                    self.error(f"Unknown element '{key}'", "structure", f"{where}.{key}")
                continue
            child, tref = hit
            if child.choice:
                other = choice_seen.get(id(child))
                if other is not None and other != key:
                    self.error(
                        f"Only one of the types of {child.name}[x] may be present ({other}, {key})",
                        "structure",
                        f"{where}.{key}",
                    )
                choice_seen[id(child)] = key
            self.element(child, tref, item, where, key, resource, root, value)
        for child, names in owner.required_names:
            for name in names:
                if name in value:
                    break
            else:
                label = f"{child.name}[x]" if child.choice else child.name
                self.error(
                    f"Missing required element '{label}' (minimum {child.min})",
                    "required",
                    f"{where}.{label}",
                )
        if not value or (len(value) == 1 and "id" in value):
            self.error("An element must have a value or children (ele-1)", "invariant", where)

    def primitive_extension(self, item: Any, where: str, array: bool) -> None:
        items = item if isinstance(item, list) and array else [item]
        element_def = for_type("Element")
        for i, ext in enumerate(items):
            if ext is None and array:
                continue
            at = f"{where}[{i}]" if array else where
            if not isinstance(ext, dict):
                self.error("A primitive's extension part must be a JSON object", "structure", at)
            elif element_def is not None:
                self.obj(element_def.root, element_def.root.keys, ext, at, None, None)

    # ---------------------------------------------------------------- elements

    def element(
        self,
        e: Element,
        tref: TypeRef,
        value: Any,
        parent_at: str,
        key: str,
        resource: Any,
        root: Any,
        parent: dict[str, Any],
    ) -> None:
        """Walk the member `key` of the JSON object `parent` (at `parent_at`): its array shape,
        cardinality, each value and the slices. A whole member found valid before in the same place
        (valid_subtrees.py) is not walked again. In a profile's pass, a member the profile leaves as
        the base defines it (`_unconstrained`) is checked only against the profile's maximum: the
        base pass reported anything else about it, and the issues of both passes are merged."""
        cls = value.__class__
        if self.profile_pass and _unconstrained(e, tref) and (len(value) if cls is list else 1) <= e.max:
            return
        if (
            cls is dict or (cls is list and 0 < len(value) <= valid_subtrees.MAX_ITEMS and None not in value)
        ) and tref.code not in _RESOURCE_TYPES:  # (`_key` beside it matters for a null item only)
            memo = valid_subtrees.lookup(
                e, tref, self.profile_pass, self.warnings, resource, value, whole=True
            )
            if memo is valid_subtrees.KNOWN:
                return
            if memo is not None:
                found, outer_taint = len(self.issues), self.tainted
                self.tainted = False
                # a lone value's own key would repeat this one: walk it without
                self._element(
                    e, tref, value, f"{parent_at}.{key}", resource, root, None, cls is dict or len(value) == 1
                )
                if not self.tainted and len(self.issues) == found:
                    valid_subtrees.remember(memo)
                self.tainted = self.tainted or outer_taint
                return
        if not e.array and value is not None and e.max > 0 and not e.slices and not isinstance(value, list):
            self.value(e, tref, value, f"{parent_at}.{key}", resource, root)  # _element on one value
            return
        ext = parent.get("_" + key)
        self._element(e, tref, value, f"{parent_at}.{key}", resource, root, ext, False)

    def _element(
        self,
        e: Element,
        tref: TypeRef,
        value: Any,
        where: str,
        resource: Any,
        root: Any,
        ext: Any,
        lone: bool,
    ) -> None:
        if e.array:
            if not isinstance(value, list):
                self.error(f"'{e.name}' must be a JSON array", "structure", where)
                items: list[Any] = [value]
                paths = [where]
            else:
                items = value
                paths = [f"{where}[{i}]" for i in range(len(value))]
                if not value:
                    self.error("An array must not be empty", "structure", where)
        else:
            if isinstance(value, list):
                self.error(f"'{e.name}' may occur once; it must not be a JSON array", "structure", where)
                return
            items, paths = [value], [where]
        if len(items) > e.max:
            self.error(f"'{e.name}' occurs {len(items)} times, at most {e.max} allowed", "structure", where)
        primitive = tref.code in primitives.NAMES
        for item, at in zip(items, paths, strict=True):
            if item is None:
                if not (primitive and e.array and isinstance(ext, list)):
                    self.error(
                        "null is only allowed in an array of primitives with extensions", "structure", at
                    )
                continue
            if lone:
                self._value(e, tref, item, at, resource, root)
            else:
                self.value(e, tref, item, at, resource, root)
        if e.slices:
            self.slices(e, tref, items, paths, where, resource, root)

    def value(self, e: Element, tref: TypeRef, item: Any, at: str, resource: Any, root: Any) -> None:
        if item.__class__ is not dict or tref.code in _RESOURCE_TYPES:
            self._value(e, tref, item, at, resource, root)
            return
        key = valid_subtrees.lookup(e, tref, self.profile_pass, self.warnings, resource, item)
        if key is valid_subtrees.KNOWN:
            return
        if key is None:
            self._value(e, tref, item, at, resource, root)
            return
        found, outer_taint = len(self.issues), self.tainted
        self.tainted = False
        self._value(e, tref, item, at, resource, root)
        if not self.tainted and len(self.issues) == found:
            valid_subtrees.remember(key)
        self.tainted = self.tainted or outer_taint

    def _value(self, e: Element, tref: TypeRef, item: Any, at: str, resource: Any, root: Any) -> None:
        code = tref.code
        if self.profile_pass and not (e.children or e.content_ref):
            pass  # the base pass checked the value's type, format and datatype: only the profile's rules below
        elif code in primitives.NAMES:
            problem = primitives.checker(code)(item)
            if problem is not None:
                self.error(f"{problem}", "value", at)
                return
            if code == "xhtml":
                why = narrative.problem_of(item)
                if why is not None:
                    self.error(f"The narrative is not allowed: {why}", "value", at)
        elif code in _RESOURCE_TYPES:
            self.nested_resource(item, at, root)
            return
        elif not isinstance(item, dict):
            self.error(f"'{e.name}' must be a JSON object ({code})", "structure", at)
            return
        else:
            if e.children and len(e.types) <= 1:
                self.obj(e, e.keys, item, at, resource, root)
            elif e.content_ref is not None:
                target = _content_target(e, resource)
                if target is not None:
                    self.obj(target, target.keys, item, at, resource, root)
            else:
                dt = for_type(code)
                if dt is None:
                    self.error(f"Unknown type '{code}'", "structure", at)
                    return
                self.obj(dt.root, dt.root.keys, item, at, resource, root)
                for inv in dt.root.invariants:
                    self.invariant(inv, item, code, at, resource, root)
            if code == "Extension":
                has_value = any(k.startswith(("value", "_value")) for k in item)
                if has_value == ("extension" in item):
                    self.error(
                        "An extension must have either extensions or a value[x], not both (ext-1)",
                        "invariant",
                        at,
                    )
        if code == "Reference" and tref.targets is not None and isinstance(item, dict):
            self.reference(tref.targets, item, at, resource)
        if e.fixed is not None and item != e.fixed:
            self.error(f"Value must be exactly {_show(e.fixed)}", "value", at)
        if e.pattern is not None and not _matches(item, e.pattern):
            self.error(f"Value must match the pattern {_show(e.pattern)}", "value", at)
        if e.binding is not None:
            strength, vs = e.binding
            if strength == "required" or (self.warnings and strength in ("extensible", "preferred")):
                problem = bindings.problem(code, item, vs)
                if problem is not None:
                    if strength == "required":
                        self.error(problem, "code-invalid", at)
                    else:
                        self.warn(f"{problem} ({strength} binding)", "code-invalid", at)
        for inv in e.invariants:
            self.invariant(inv, item, e.type_path, at, resource, root)

    def reference(self, targets: frozenset[str], ref: dict[str, Any], at: str, resource: Any) -> None:
        text = ref.get("reference")
        kind: str | None = None
        if isinstance(text, str) and text.startswith("#"):
            self.tainted = True  # its target's type is in the resource's contained
        if isinstance(text, str) and text.startswith("#") and isinstance(resource, dict):
            contained = resource.get("contained")
            for c in contained if isinstance(contained, list) else ():
                if isinstance(c, dict) and c.get("id") == text[1:]:
                    kind = c.get("resourceType")
        elif isinstance(text, str) and not text.startswith(("urn:", "#")):
            parts = text.split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            if len(parts) >= 2 and parts[-2][:1].isupper():
                kind = parts[-2]
        declared = ref.get("type")
        for found, where in ((kind, f"{at}.reference"), (declared, f"{at}.type")):
            if isinstance(found, str) and found not in targets and for_type(found) is not None:
                allowed = ", ".join(sorted(targets))
                self.error(
                    f"A reference to a {found} is not allowed here (allowed: {allowed})", "structure", where
                )

    def invariant(self, inv: Any, item: Any, type_path: str, at: str, resource: Any, root: Any) -> None:
        if inv.severity != "error" and not self.warnings:
            return
        if inv.context and valid_subtrees.invariant_reads_context(inv.key, inv.expression, item):
            self.tainted = True
        holds = inv.holds(item, type_path, resource, root)
        if holds is None:
            self.warn(f"Invariant {inv.key} could not be evaluated: {inv.expression}", "informational", at)
        elif not holds:
            message = f"Invariant {inv.key} failed: {inv.human}"
            if inv.severity == "error":
                self.error(message, "invariant", at)
            else:
                self.warn(message, "invariant", at)

    # ---------------------------------------------------------------- slicing

    def slices(
        self,
        e: Element,
        tref: TypeRef,
        items: list[Any],
        paths: list[str],
        where: str,
        resource: Any,
        root: Any,
    ) -> None:
        counts = [0] * len(e.slices)
        for item, at in zip(items, paths, strict=True):
            matched = False
            for n, s in enumerate(e.slices):
                if _in_slice(e, s, item):
                    counts[n] += 1
                    matched = True
                    if s.children or s.fixed is not None or s.pattern is not None:
                        sliced = Walk(self.warnings, profile_pass=True)
                        sliced.value(s, s.types[0] if s.types else tref, item, at, resource, root)
                        self.issues.extend(sliced.issues)
                        self.tainted = self.tainted or sliced.tainted
                    break
            if not matched and e.slicing_closed:
                self.error(
                    f"The element matches none of the slices of {e.path} (closed slicing)", "structure", at
                )
        for n, s in enumerate(e.slices):
            if counts[n] < s.min:
                self.error(
                    f"Slice '{s.slice_name}' of {e.path} needs at least {s.min} element(s), found {counts[n]}",
                    "structure",
                    where,
                )
            if counts[n] > s.max:
                self.error(
                    f"Slice '{s.slice_name}' of {e.path} allows at most {s.max} element(s), found {counts[n]}",
                    "structure",
                    where,
                )


def _unconstrained(e: Element, tref: TypeRef) -> bool:
    """Whether a profile's pass can find nothing about a member at `e` but its count: no children,
    slices, fixed value, pattern, binding, invariant or reference targets of the profile's own, and
    no resource inside (the base pass walked the member's values, shape and format)."""
    return not (
        e.has_own_rules() or e.binding is not None or tref.targets is not None or tref.code in _RESOURCE_TYPES
    )


def _content_target(e: Element, resource: Any) -> Element | None:
    ref = e.content_ref or ""
    path = ref.split("#", 1)[-1]
    definition = for_type(path.split(".", 1)[0])
    return definition.by_path.get(path) if definition is not None else None


def _matches(value: Any, pattern: Any) -> bool:
    """pattern[x] semantics: every property of the pattern is in the value; each array item of
    the pattern matches some item of the value's array."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and _matches(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(_matches(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def _in_slice(e: Element, s: Element, item: Any) -> bool:
    """Whether an item belongs to slice `s`, by the value, pattern and type discriminators."""
    if not e.discriminators:
        return False
    for kind, path in e.discriminators:
        if kind == "type" and path == "$this":
            continue  # type slices of choice elements: the JSON name already chose the type
        if kind not in ("value", "pattern"):
            return False
        targets = [s] if path == "$this" else _descend(s, path)
        expected = [t.fixed if t.fixed is not None else t.pattern for t in targets]
        expected = [x for x in expected if x is not None]
        if not expected:
            return False
        actual = _values_at(item, path)
        if not any(_matches(a, x) for a in actual for x in expected):
            return False
    return True


def _descend(e: Element, path: str) -> list[Element]:
    """The elements at `path` below a slice, through its children and their slices."""
    nodes = [e]
    for part in path.split("."):
        nxt: list[Element] = []
        for node in nodes:
            child = node.children.get(part)
            if child is not None:
                nxt.append(child)
            for s in node.slices:
                grand = s.children.get(part)
                if grand is not None:
                    nxt.append(grand)
            if child is not None:
                nxt.extend(x for s in child.slices for x in [s])
        nodes = nxt
    return nodes


def _values_at(item: Any, path: str) -> list[Any]:
    values = [item]
    if path == "$this":
        return values
    for part in path.split("."):
        nxt: list[Any] = []
        for v in values:
            if isinstance(v, dict) and part in v:
                x = v[part]
                nxt.extend(x if isinstance(x, list) else [x])
        values = nxt
    return values


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["Walk", "compiled"]
