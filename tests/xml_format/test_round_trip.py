"""JSON -> XML -> JSON is the identity: on every HL7 R4 example (hl7.fhir.r4.examples 4.0.1, CC0;
the package holds no XML examples, so its JSON is what is parsed) and on Hypothesis-generated
resources built from the compiled snapshots (https://hl7.org/fhir/R4/xml.html)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fhir_server import model, spec_package
from fhir_server.xml_format import parse, serialise
from fhir_server.xml_format.layout import object_owner
from profiles.snapshot import Element, for_type


def test_every_hl7_example_round_trips() -> None:
    mismatched, count = [], 0
    for path, resource in spec_package.resources():
        if not model.is_resource_type(resource.get("resourceType")):
            continue
        count += 1
        xml = serialise(resource)
        if parse(xml) != resource:
            mismatched.append(path.name)
    assert mismatched == []
    assert count > 5000


# ---------------------------------------------------------------- generated resources

# XML 1.0 characters that FHIR strings may hold: no controls but tab, CR, LF; no surrogates; no U+FFFE/F
_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)] + ["\ufffe", "\uffff"],
    ),
    min_size=1,
    max_size=12,
)
_DIVS = _TEXT.map(
    lambda t: (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p title="a&quot;b">'
        + t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        + "</p></div>"
    )
)
_EXTENSION = st.fixed_dictionaries(
    {"url": st.just("http://example.org/x")},
    optional={"valueString": _TEXT},
).map(lambda e: e if "valueString" in e else {**e, "valueBoolean": True})
_TWIN = st.fixed_dictionaries({}, optional={"id": st.from_regex(r"[a-z]{1,5}", fullmatch=True)}).flatmap(
    lambda twin: st.lists(_EXTENSION, min_size=0 if twin else 1, max_size=2).map(
        lambda exts: {**twin, **({"extension": exts} if exts else {})}
    )
)
_RESOURCE_TYPES = ["Patient", "Observation", "Bundle", "Questionnaire", "Parameters", "Medication"]


def _primitive(code: str) -> st.SearchStrategy[Any]:
    if code == "boolean":
        return st.booleans()
    if code in ("integer", "unsignedInt", "positiveInt"):
        return st.integers(1, 2**31 - 1)
    if code == "decimal":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)
    if code == "xhtml":
        return _DIVS
    return _TEXT


@st.composite
def _object(draw: st.DrawFn, owner: Element, depth: int, skip_resources: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = list(owner.keys)
    for key in draw(st.lists(st.sampled_from(keys), max_size=4 if depth < 3 else 2, unique=True)):
        e, tref = owner.keys[key]
        if e.choice and any(owner.keys[k.lstrip("_")][0] is e for k in out):
            continue  # one type of a choice element
        if key == "id" and "." not in owner.path:
            out["id"] = draw(st.from_regex(r"[A-Za-z0-9\-.]{1,20}", fullmatch=True))
            continue
        code = tref.code
        if code in ("Resource", "DomainResource"):
            if depth >= 2 or skip_resources:
                continue
            item: st.SearchStrategy[Any] = _resource(depth + 1)
        elif code == "xhtml" or e.xml_attr:
            item = _primitive(code)
        elif code in model_primitives():
            n = draw(st.integers(1, 3)) if e.array else 1
            values = [draw(_primitive(code) | st.none()) for _ in range(n)]
            twins = [draw(_TWIN) if v is None or draw(st.booleans()) else None for v in values]
            if not e.array:
                values, twins = values[:1], twins[:1]
            if any(v is not None for v in values):
                out[key] = values if e.array else values[0]
            if any(t is not None for t in twins):
                out["_" + key] = twins if e.array else twins[0]
            continue
        elif depth >= 4:
            continue
        else:
            child = object_owner(e, tref)
            if child is None:
                continue
            item = _object(child, depth + 1).filter(lambda v: v and set(v) != {"id"})
        out[key] = draw(st.lists(item, min_size=1, max_size=2)) if e.array else draw(item)
    return out


def model_primitives() -> frozenset[str]:
    from profiles.primitives import NAMES

    return NAMES


def _resource(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    def build(rtype: str) -> st.SearchStrategy[dict[str, Any]]:
        definition = for_type(rtype)
        assert definition is not None
        return _object(definition.root, depth).map(lambda body: {"resourceType": rtype, **body})

    return st.sampled_from(_RESOURCE_TYPES).flatmap(build)


@given(_resource(0))
def test_generated_resources_round_trip(resource: dict[str, Any]) -> None:
    xml = serialise(resource)
    assert parse(xml) == resource
    assert serialise(parse(xml), pretty=True) == serialise(resource, pretty=True)
    assert parse(serialise(resource, pretty=True)) == resource
