"""FHIR XML to the resource's JSON (https://hl7.org/fhir/R4/xml.html), safely.

Two passes. The first reads the bytes with expat (C, non-validating): no DTD, no entity
declarations (so no external entities and no billion laughs), UTF-8 only, element nesting within
`input_limits.MAX_JSON_DEPTH`; XHTML elements are kept as the verbatim text of the document
(the narrative `div`, with the namespace declarations it inherits added when it uses them). The
second pass walks the elements against the compiled snapshots: unknown elements or attributes,
elements out of the documented order, a repeated single element, text where FHIR has none, or a
bad boolean/integer/decimal are 400s naming the FHIRPath and line. Values become what the JSON
parser would have produced from the same text (decimals through orjson).
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

import orjson

from profiles import primitives
from profiles.snapshot import Element, TypeRef

from ..errors import Invalid
from ..input_limits import MAX_JSON_DEPTH
from .layout import FHIR_NS, PRIMITIVES, RESOURCE_CODES, XHTML_NS, element_root, object_owner, order
from .layout import resource_definition as _definition

_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"  # xsi:schemaLocation is tolerated and dropped
_INTEGERS = primitives.INTEGERS


class Node:
    """An element of the document: namespace, local name, attributes, line, children; `raw` holds
    the verbatim text of an XHTML element; `text`: non-whitespace character data directly inside."""

    __slots__ = ("attrs", "children", "line", "name", "ns", "raw", "text")

    def __init__(self, ns: str, name: str, attrs: dict[str, str], line: int) -> None:
        self.ns = ns
        self.name = name
        self.attrs = attrs
        self.line = line
        self.children: list[Node] = []
        self.raw: str | None = None
        self.text = False


_NAMES: dict[str, tuple[str, str, str]] = {}  # expat name -> (namespace, local name, prefix)


def _name(name: str) -> tuple[str, str, str]:
    """(namespace, local name, prefix) of an expat name 'uri local [prefix]'."""
    parts = name.split(" ")
    if len(parts) == 1:
        found = ("", parts[0], "")
    elif len(parts) == 2:
        found = (parts[0], parts[1], "")
    else:
        found = (parts[0], parts[1], parts[2])
    if len(_NAMES) < 10_000:  # FHIR has a few thousand element names; hostile documents do not grow it
        _NAMES[name] = found
    return found


class _Reader:
    """The expat pass: a tree of `Node`s."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.root: Node | None = None
        self.stack: list[Node] = []
        # (depth, in-scope namespace declarations) for each open element that declares some
        self.scopes: list[tuple[int, dict[str, str]]] = [(-1, {})]
        self.pending: dict[str, str] = {}  # declared on the element about to start
        self.opaque: Node | None = None  # the XHTML element being captured
        self.opaque_depth = 0
        self.opaque_start = 0
        self.opaque_used: set[str] = set()
        self.opaque_declared: set[str] = set()
        self.opaque_scope: dict[str, str] = {}
        self.opaque_prefix = ""
        p = self.parser = expat.ParserCreate(namespace_separator=" ")
        p.namespace_prefixes = True
        p.buffer_text = True
        p.XmlDeclHandler = self.declaration
        p.StartDoctypeDeclHandler = self.doctype
        p.EntityDeclHandler = self.entity
        p.UnparsedEntityDeclHandler = self.entity
        p.ExternalEntityRefHandler = self.external
        p.StartNamespaceDeclHandler = self.namespace
        p.StartElementHandler = self.start
        p.EndElementHandler = self.end
        p.CharacterDataHandler = self.characters
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def read(self) -> Node:
        try:
            self.parser.Parse(self.raw, True)
        except expat.ExpatError as exc:
            raise Invalid(
                f"The body is not well-formed XML: {expat.ErrorString(exc.code)} "
                f"(line {exc.lineno}, column {exc.offset + 1})",
                "$this",
            ) from None
        if self.root is None:
            raise Invalid("The body holds no XML element", "$this")
        return self.root

    # ------------------------------------------------------------------ refusals

    def declaration(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise Invalid(f"FHIR XML must be encoded in UTF-8, not {encoding}", "$this")

    def doctype(self, *args: Any) -> None:
        raise Invalid("A DTD (<!DOCTYPE ...>) is not allowed in FHIR XML", "$this")

    def entity(self, *args: Any) -> None:
        raise Invalid("Entity declarations and external entities are not allowed in FHIR XML", "$this")

    def external(self, context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise Invalid("Entity declarations and external entities are not allowed in FHIR XML", "$this")

    # ------------------------------------------------------------------ tree

    def namespace(self, prefix: str | None, uri: str) -> None:
        self.pending[prefix or ""] = uri
        if self.opaque is not None:
            self.opaque_declared.add(prefix or "")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.opaque is not None:
            self.pending = {}
            self.opaque_depth += 1
            self.opaque_used.add(_name(name)[2])
            self.opaque_used.update(_name(a)[2] for a in attrs if " " in a)
            return
        ns, local, prefix = _NAMES.get(name) or _name(name)
        stack = self.stack
        declared = self.pending
        if declared:  # in scope from here: what an XHTML div below may inherit
            self.pending = {}
            self.scopes.append((len(stack), {**self.scopes[-1][1], **declared}))
        if len(stack) >= MAX_JSON_DEPTH:
            raise Invalid(
                f"The XML nests deeper than {MAX_JSON_DEPTH} elements (line {self.parser.CurrentLineNumber})",
                "$this",
            )
        node = Node(ns, local, attrs, self.parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        elif self.root is None:
            self.root = node
        stack.append(node)
        if ns == XHTML_NS:  # the narrative: kept as written
            self.opaque = node
            self.opaque_depth = 1
            self.opaque_start = self.parser.CurrentByteIndex
            self.opaque_used = {prefix}
            self.opaque_used.update(_name(a)[2] for a in attrs if " " in a)
            self.opaque_declared = set(declared)
            scopes = self.scopes
            self.opaque_scope = scopes[-2 if declared else -1][1]
            self.opaque_prefix = prefix

    def end(self, name: str) -> None:
        if self.opaque is not None:
            self.opaque_depth -= 1
            if self.opaque_depth > 0:
                return
            end = _tag_end(self.raw, self.parser.CurrentByteIndex)
            text = self.raw[self.opaque_start : end].decode("utf-8")
            inherited = [
                (p, self.opaque_scope[p])
                for p in sorted(self.opaque_used - self.opaque_declared)
                if p in self.opaque_scope
            ]
            if inherited:  # make the div self-contained: the declarations it relies on
                local = _name(name)[1]
                qname = f"{self.opaque_prefix}:{local}" if self.opaque_prefix else local
                decls = "".join(f' xmlns{":" + p if p else ""}="{uri}"' for p, uri in inherited)
                text = text[: 1 + len(qname)] + decls + text[1 + len(qname) :]
            self.opaque.raw = text
            self.opaque = None
        self.stack.pop()
        if self.scopes[-1][0] == len(self.stack):
            self.scopes.pop()

    def characters(self, data: str) -> None:
        if self.opaque is None and self.stack and not data.isspace():
            self.stack[-1].text = True


def _tag_end(raw: bytes, start: int) -> int:
    """The index after the `>` closing the tag that starts at `start` (quoted values skipped)."""
    quote = 0
    for i in range(start, len(raw)):
        c = raw[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
    return len(raw)


def parse(raw: bytes) -> dict[str, Any]:
    """The JSON of the resource an XML document holds; Invalid (400) naming where it is wrong."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise Invalid("FHIR XML must be encoded in UTF-8, not UTF-16", "$this")
    root = _Reader(raw).read()
    if root.ns != FHIR_NS:
        raise Invalid(
            f"The root element must be a resource in the namespace {FHIR_NS} (found '{root.name}'"
            f"{' in ' + root.ns if root.ns else ' without a namespace'})",
            "$this",
        )
    return _Converter().resource(root, root.name, 1)


def _at(node: Node) -> str:
    return f" (line {node.line})"


class _Converter:
    """The second pass: elements to JSON against the definitions."""

    def resource(self, node: Node, where: str, depth: int) -> dict[str, Any]:
        definition = _definition(node.name) if node.ns == FHIR_NS else None
        if definition is None:
            raise Invalid(f"Unknown resource type '{node.name}'{_at(node)}", where)
        self.no_attributes(node, where)
        out: dict[str, Any] = {"resourceType": node.name}
        self.fill(out, definition.root, node, where, depth)
        return out

    def no_attributes(self, node: Node, where: str) -> None:
        for name in node.attrs:
            if not name.startswith(_XSI_NS + " "):
                raise Invalid(f"Unknown attribute '{_name(name)[1]}'{_at(node)}", where)

    def fill(self, out: dict[str, Any], owner: Element, node: Node, where: str, depth: int) -> None:
        """Put `node`'s attributes and children into `out`, as described by `owner`'s children."""
        if depth > MAX_JSON_DEPTH:
            raise Invalid(f"The resource nests deeper than {MAX_JSON_DEPTH} levels{_at(node)}", where)
        if node.text:
            raise Invalid(f"Text is not allowed inside the FHIR element '{node.name}'{_at(node)}", where)
        keys = owner.keys
        for name, value in node.attrs.items():
            hit = keys.get(name)
            if hit is not None and hit[0].xml_attr:
                out[name] = value
            elif not (name.startswith(_XSI_NS + " ") and owner is not None and "." not in owner.path):
                raise Invalid(f"Unknown attribute '{_name(name)[1]}'{_at(node)}", f"{where}.{name}")
        positions = order(owner)
        last = -1
        twins: dict[str, list[Any]] = {}  # primitive arrays: the `_name` parts, aligned with the values
        counts: dict[str, int] = {}
        for child in node.children:
            key = child.name
            hit = keys.get(key) if child.ns in (FHIR_NS, XHTML_NS) else None
            if hit is not None and hit[1].code == "xhtml" and child.ns != XHTML_NS:
                raise Invalid(
                    f"The narrative div must be in the namespace {XHTML_NS}{_at(child)}", f"{where}.{key}"
                )
            if hit is None or hit[0].xml_attr or (child.ns == XHTML_NS) != (hit[1].code == "xhtml"):
                label = key if child.ns in (FHIR_NS, "") else f"{{{child.ns}}}{key}"
                raise Invalid(f"Unknown element '{label}'{_at(child)}", f"{where}.{key}")
            e, tref = hit
            pos = positions[key]
            n = counts.get(key, 0)
            if pos < last or (pos == last and n == 0):
                raise Invalid(
                    f"Element '{key}' is out of order (FHIR XML follows the order of the definition)"
                    f"{_at(child)}",
                    f"{where}.{key}",
                )
            if n and not e.array:
                raise Invalid(f"Element '{key}' may occur only once{_at(child)}", f"{where}.{key}")
            last = pos
            counts[key] = n + 1
            at = f"{where}.{key}[{n}]" if e.array else f"{where}.{key}"
            value, twin = self.value(child, e, tref, at, depth + (2 if e.array else 1))
            if e.array:
                if tref.code in PRIMITIVES:
                    values = out.setdefault(key, [])
                    values.append(value)
                    twins.setdefault(key, []).append(twin)
                else:
                    out.setdefault(key, []).append(value)
            else:
                if value is not None:
                    out[key] = value
                if twin is not None:
                    out["_" + key] = twin
        for key, parts in twins.items():
            if all(v is None for v in out[key]):
                del out[key]
            if any(p is not None for p in parts):
                out["_" + key] = parts

    def value(self, node: Node, e: Element, tref: TypeRef, where: str, depth: int) -> tuple[Any, Any]:
        """(JSON value, `_name` twin or None) of one element."""
        code = tref.code
        if code == "xhtml":
            return node.raw, None
        if code in PRIMITIVES:
            return self.primitive(node, code, where, depth)
        if code in RESOURCE_CODES:
            self.no_attributes(node, where)
            if node.text:
                raise Invalid(f"Text is not allowed inside '{node.name}'{_at(node)}", where)
            if len(node.children) != 1:
                raise Invalid(
                    f"'{node.name}' must hold exactly one resource, found {len(node.children)}{_at(node)}",
                    where,
                )
            return self.resource(node.children[0], where, depth + 1), None
        owner = object_owner(e, tref)
        if owner is None:
            raise Invalid(f"Unknown type '{code}'{_at(node)}", where)
        out: dict[str, Any] = {}
        self.fill(out, owner, node, where, depth)
        if not out or (len(out) == 1 and "id" in out):
            raise Invalid(f"An element must have a value or children (ele-1){_at(node)}", where)
        return out, None

    def primitive(self, node: Node, code: str, where: str, depth: int) -> tuple[Any, Any]:
        text = node.attrs.pop("value", None)  # the node is ours: what remains is the `_name` twin
        twin: dict[str, Any] = {}
        if node.attrs or node.children or node.text:
            self.fill(twin, element_root(), node, where, depth)
        if text is None and not twin:
            raise Invalid(f"An element must have a value attribute or extensions (ele-1){_at(node)}", where)
        value = None if text is None else _primitive_value(code, text, node, where)
        return value, twin or None


def _primitive_value(code: str, text: str, node: Node, where: str) -> Any:
    """The JSON value of a primitive's `value` attribute (https://hl7.org/fhir/R4/json.html#primitive)."""
    if code == "boolean":
        if text not in ("true", "false"):
            raise Invalid(f"'{text[:40]}' is not a boolean (true or false){_at(node)}", where)
        return text == "true"
    if code in _INTEGERS:
        pattern = primitives.regex(code)
        if len(text) > 20 or pattern is None or not pattern.fullmatch(text):
            raise Invalid(f"'{text[:40]}' is not an integer{_at(node)}", where)
        return int(text)
    if code == "decimal":
        pattern = primitives.regex("decimal")
        if pattern is None or not pattern.fullmatch(text):
            raise Invalid(f"'{text[:40]}' is not a decimal{_at(node)}", where)
        try:
            return orjson.loads(text)  # as the JSON parser reads the same digits
        except orjson.JSONDecodeError:
            raise Invalid(f"'{text[:40]}' is out of the range of a decimal{_at(node)}", where) from None
    return text
