"""A resource's JSON as FHIR XML (https://hl7.org/fhir/R4/xml.html).

The resource type is the root element in the namespace http://hl7.org/fhir; elements follow the
snapshot order; primitives are `value` attributes with the JSON `_name` twin's `id` as an attribute
and its extensions as children; arrays are repeated elements; choice elements keep their JSON names
(`valueQuantity`); nested resources (contained, Bundle.entry.resource, Parameters.parameter.resource)
are wrapped in an element named by their type; the narrative `div` is copied verbatim. Numbers are
written as the JSON side writes them (orjson), so XML and JSON carry the same decimal text.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import orjson
from lxml import etree

from profiles.snapshot import Element, TypeRef

from .layout import FHIR_NS, PRIMITIVES, RESOURCE_CODES, XHTML_NS, element_root, object_owner, order
from .layout import resource_definition as _definition

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# XML 1.0 cannot hold the other control characters, U+FFFE/U+FFFF or lone surrogates, even escaped: they
# never reach storage (control characters are refused on write) but may be echoed in a diagnostic
_ESCAPE = re.compile(r'[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]')
_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\n": "&#10;",
    "\r": "&#13;",
    "\t": "&#9;",
}
_parsers = threading.local()  # lxml parsers are best not shared between threads


class NotSerialisable(ValueError):
    """The JSON does not follow the resource's definition (an unknown element, a wrong shape)."""


def serialise(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """The XML document of a resource (UTF-8, with an XML declaration)."""
    out = _Writer(pretty)
    out.parts.append(DECLARATION)
    out.resource(resource, 0, f' xmlns="{FHIR_NS}"', str(resource.get("resourceType")))
    if pretty:
        out.parts.append("\n")
    return "".join(out.parts).encode("utf-8")


def attribute(value: str) -> str:
    """A string escaped for a double-quoted attribute (newlines and tabs as character references,
    which attribute-value normalisation would otherwise turn into spaces)."""
    return _ESCAPE.sub(_entity, value) if _ESCAPE.search(value) else value


def _entity(match: re.Match[str]) -> str:
    return _ENTITIES.get(match.group(), "\ufffd")


def _primitive_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return orjson.dumps(value).decode()
    return attribute(str(value))


class _Writer:
    __slots__ = ("parts", "pretty")

    def __init__(self, pretty: bool) -> None:
        self.parts: list[str] = []
        self.pretty = pretty

    def indent(self, depth: int) -> None:
        if self.pretty:
            self.parts.append("\n" + "  " * depth)

    def resource(self, res: Any, depth: int, namespace: str, where: str) -> None:
        if not isinstance(res, dict):
            raise NotSerialisable(f"{where}: a resource must be a JSON object")
        rtype = res.get("resourceType")
        definition = _definition(rtype) if isinstance(rtype, str) else None
        if definition is None:
            raise NotSerialisable(f"{where}: unknown resource type {rtype!r}")
        self.indent(depth)
        self.obj(str(rtype), definition.root, res, depth, where, namespace, skip="resourceType")

    def obj(
        self, name: str, owner: Element, value: Any, depth: int, where: str, extra: str = "", skip: str = ""
    ) -> None:
        """`<name attributes>children</name>` for a JSON object described by `owner`'s children."""
        if not isinstance(value, dict):
            raise NotSerialisable(f"{where}: expected a JSON object")
        self.parts.append(f"<{name}{extra}")
        children = self.attributes_and_children(owner, value, where, skip)
        if not children:
            self.parts.append("/>")
            return
        self.parts.append(">")
        self.children(owner, value, children, depth + 1, where)
        self.indent(depth)
        self.parts.append(f"</{name}>")

    def attributes_and_children(
        self, owner: Element, value: dict[str, Any], where: str, skip: str
    ) -> list[str]:
        """Write the attributes of `value`; return its other keys in XML order."""
        positions = order(owner)
        keys = owner.keys
        children: list[tuple[int, str]] = []
        for key, item in value.items():
            if key == skip:
                continue
            base = key[1:] if key[:1] == "_" else key
            pos = positions.get(base)
            if pos is None:
                raise NotSerialisable(f"{where}.{key}: unknown element")
            if key is not base and base in value:
                continue  # the `_name` twin goes with its value
            e = keys[base][0]
            if e.xml_attr:
                if not isinstance(item, str):
                    raise NotSerialisable(f"{where}.{key}: expected a string")
                self.parts.append(f' {base}="{attribute(item)}"')
            else:
                children.append((pos, base))
        children.sort()
        return [base for _, base in children]

    def children(
        self, owner: Element, value: dict[str, Any], names: list[str], depth: int, where: str
    ) -> None:
        keys = owner.keys
        for key in names:
            e, tref = keys[key]
            item = value.get(key)
            twin = value.get("_" + key)
            at = f"{where}.{key}"
            if e.array:
                items = item if isinstance(item, list) else ([] if item is None else [item])
                twins = twin if isinstance(twin, list) else ([] if twin is None else [twin])
                for n in range(max(len(items), len(twins))):
                    self.value(
                        key,
                        e,
                        tref,
                        items[n] if n < len(items) else None,
                        twins[n] if n < len(twins) else None,
                        depth,
                        f"{at}[{n}]",
                    )
            else:
                self.value(key, e, tref, item, twin, depth, at)

    def value(
        self, name: str, e: Element, tref: TypeRef, item: Any, twin: Any, depth: int, where: str
    ) -> None:
        code = tref.code
        if code == "xhtml":
            self.indent(depth)
            self.parts.append(xhtml(item, where))
        elif code in PRIMITIVES:
            if item is None and twin is None:
                return
            if isinstance(item, (dict, list)):
                raise NotSerialisable(f"{where}: expected a primitive value")
            self.indent(depth)
            if twin is None:
                self.parts.append(f'<{name} value="{_primitive_text(item)}"/>')
                return
            value = "" if item is None else f' value="{_primitive_text(item)}"'
            root = element_root()
            if not isinstance(twin, dict):
                raise NotSerialisable(f"{where}: the _{name} part must be a JSON object")
            self.parts.append(f"<{name}")
            children = self.attributes_and_children(root, twin, where, "")
            self.parts.append(value)
            if not children:
                self.parts.append("/>")
                return
            self.parts.append(">")
            self.children(root, twin, children, depth + 1, where)
            self.indent(depth)
            self.parts.append(f"</{name}>")
        elif item is None:
            return
        elif code in RESOURCE_CODES:
            self.indent(depth)
            self.parts.append(f"<{name}>")
            self.resource(item, depth + 1, "", where)
            self.indent(depth)
            self.parts.append(f"</{name}>")
        else:
            owner = object_owner(e, tref)
            if owner is None:
                raise NotSerialisable(f"{where}: unknown type {code}")
            self.indent(depth)
            self.obj(name, owner, item, depth, where)


def xhtml(div: Any, where: str) -> str:
    """The narrative div as XML: the JSON string verbatim when it is a self-contained XHTML div."""
    if not isinstance(div, str):
        raise NotSerialisable(f"{where}: the div must be a string")
    text = div.strip()
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except (etree.XMLSyntaxError, ValueError):
        root = None
    if root is not None and root.tag == f"{{{XHTML_NS}}}div" and "<!DOCTYPE" not in text:
        if text.startswith(("<?", "<!")):  # a declaration or comment before the div: the div alone
            return str(etree.tostring(root, encoding="unicode"))
        return text
    # Not well-formed XHTML (never stored: txt-1 refuses it): its text, escaped, in an XHTML div.
    escaped = attribute(div)
    return f'<div xmlns="{XHTML_NS}">{escaped}</div>'
