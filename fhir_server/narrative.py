"""Narrative xhtml rule txt-1 (https://hl7.org/fhir/R4/narrative.html#Narrative).

A `div` is well-formed XML rooted at an xhtml-namespace `div`, with only the basic HTML elements and
attributes listed by txt-1 (so no head, body, script, form, base, link, frame, iframe, object, embed,
applet, nor `on*` event handler attributes), no DTD or entity declarations, no `javascript:` links
(scripts are forbidden) and no processing instructions (a stylesheet reference is one).

txt-2 (some non-whitespace content) is not enforced: HL7's own R4 examples hold whitespace-only divs
(e.g. ActivityDefinition/blood-tubes-supply), and an empty narrative is harmless.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from lxml import etree

from .errors import Invalid

XHTML = "http://www.w3.org/1999/xhtml"
_XML = "http://www.w3.org/XML/1998/namespace"

# txt-1 (StructureDefinition-Narrative, R4 4.0.1): the allowed element and attribute names.
# fmt: off
ELEMENTS = frozenset((
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "ul", "var"
))
ATTRIBUTES = frozenset((
    "abbr", "accesskey", "align", "alt", "axis", "bgcolor", "border", "cellhalign", "cellpadding",
    "cellspacing", "cellvalign", "char", "charoff", "charset", "cite", "class", "colspan", "compact",
    "coords", "dir", "frame", "headers", "height", "href", "hreflang", "hspace", "id", "lang", "longdesc",
    "name", "nowrap", "rel", "rev", "rowspan", "rules", "scope", "shape", "span", "src", "start", "style",
    "summary", "tabindex", "title", "type", "valign", "value", "vspace", "width"
))
# fmt: on
# Attributes holding a URL, where a script scheme would run code when followed or loaded.
_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "cite"})
_SCRIPT_SCHEMES = ("javascript:", "vbscript:")

# Browsers drop ASCII whitespace and control characters inside a URL scheme ("java\tscript:").
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20]")
_parsers = threading.local()  # lxml parsers are best not shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        _parsers.parser = parser
    return parser


def check(resource: dict[str, Any], path: str) -> None:
    """Check every narrative `div` in a resource (its own, contained ones, sections, entries...).

    `path` is the resource's FHIRPath (e.g. `Patient` or `Bundle.entry[0].resource`); raises Invalid
    pointing at the offending `...text.div`.
    """
    for div_path, div in _divs(resource, path):
        problem = problem_of(div)
        if problem is not None:
            raise Invalid(f"The narrative is not allowed: {problem}", div_path)


def _divs(node: Any, path: str) -> list[tuple[str, Any]]:
    """(FHIRPath, value) of every `div` element below node (Narrative is the only type with a `div`)."""
    found: list[tuple[str, Any]] = []
    stack = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "div":  # after model validation, only Narrative has one
                    found.append((f"{where}.div", value))
                elif isinstance(value, (dict, list)):
                    stack.append((value, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend(
                (value, f"{where}[{i}]") for i, value in enumerate(item) if isinstance(value, (dict, list))
            )
    return found


def problem_of(div: Any) -> str | None:
    """Why a `div` value breaks the xhtml rules, or None when it is allowed."""
    if not isinstance(div, str):
        return "the div must be a string of XHTML"
    if "<!" in div and ("<!DOCTYPE" in div.upper() or "<!ENTITY" in div.upper()):
        return "DTDs and entity declarations are not allowed"
    try:
        root = etree.fromstring(div.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        return f"the div is not well-formed XHTML ({exc.msg})"
    if root.tag != f"{{{XHTML}}}div":
        return f"the root element must be a div in the namespace {XHTML}"
    for element in root.iter():
        if element.tag is etree.PI:
            return "processing instructions are not allowed"
        if isinstance(element.tag, str):  # not a comment
            problem = _element_problem(element)
            if problem is not None:
                return problem
    return None


def _element_problem(element: Any) -> str | None:
    qname = etree.QName(element)
    if qname.namespace != XHTML:
        return f"element '{qname.localname}' is not in the XHTML namespace"
    if qname.localname not in ELEMENTS:
        return f"element '{qname.localname}' is not allowed (txt-1)"
    for name, value in element.attrib.items():
        attr = etree.QName(name)
        if attr.namespace == _XML and attr.localname == "lang":
            continue
        if attr.namespace is not None or attr.localname not in ATTRIBUTES:
            return f"attribute '{attr.localname}' of '{qname.localname}' is not allowed (txt-1)"
        if attr.localname in _URL_ATTRIBUTES and _is_script_url(value):
            return f"attribute '{attr.localname}' of '{qname.localname}' holds a script URL"
    return None


def _is_script_url(value: str) -> bool:
    return _IGNORED_IN_SCHEME.sub("", value).lower().startswith(_SCRIPT_SCHEMES)
