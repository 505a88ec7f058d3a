"""JSON objects whose members are all plain primitives, accepted in one pass (https://hl7.org/fhir/R4/json.html#primitive).

An Identifier `{"system": ..., "value": ...}`, a Coding or a Period is a JSON object whose members
are primitive values. The walk (walk.py) checks such an object member by member: each member's
element, its JSON shape, its cardinality, its format, and the rules on it. Ingested records carry a
new identifier each, which no remembered verdict (valid_subtrees.py) can spare: walked member by
member in both passes, it was about a fifth of validating an Apple Health Observation.

`accepts(owner, warnings, value)` answers, for the members of `value` walked against `owner`'s
children, whether the walk would find nothing wrong, when it can tell that from the members' formats
alone: each member names a child that holds one primitive value (not an array, not a choice, not
sliced, nothing defined inside it, allowed at least once) and has no fixed value, pattern,
invariant or binding the walk would check; each value passes its type's format; the required
children are there; the object is not empty (ele-1). Then `Walk.obj` is done. Anything else (a
`_member`, an extension, an unknown or complex member, a format that fails) answers False, and the
walk checks the object as before, so whatever is wrong is reported exactly as it was. The rules of
the object as a whole (the datatype's own invariants, such as Period's per-1) are not this module's:
the walk still checks them.
"""

from __future__ import annotations

from typing import Any

from fhir_server.element_memo import Table

from . import primitives
from .snapshot import Element

# Per (owner, warnings): the format check of each member that may be accepted, and the required
# children's JSON names. Keyed by the compiled Element itself (kept alive while remembered: an
# Element recompiled later is a new key); bounded as valid_subtrees' table is.
_Plan = tuple[dict[str, primitives.Check], tuple[tuple[str, ...], ...]]
_PLANS: Table[tuple[Element, bool], _Plan] = Table(4_096)


def _plan(owner: Element, warnings: bool) -> _Plan:
    checks: dict[str, primitives.Check] = {}
    for name, (child, tref) in owner.keys.items():
        code = tref.code
        if (
            name[:1] == "_"
            or code not in primitives.NAMES
            or code == "xhtml"
            or child.array
            or child.choice
            or child.max < 1
            or child.has_own_rules()
            or (child.binding is not None and (child.binding[0] == "required" or warnings))
        ):
            continue
        checks[name] = primitives.checker(code)
    return checks, tuple(names for _child, names in owner.required_names)


def accepts(owner: Element, warnings: bool, value: dict[str, Any]) -> bool:
    """Whether the walk of `value`'s members against `owner` would find no issue, told from their
    formats alone; False when it cannot tell (see the module docstring)."""
    if not value or (len(value) == 1 and "id" in value):
        return False
    key = (owner, warnings)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS.put(key, _plan(owner, warnings))
    checks, required = plan
    for name, item in value.items():
        check = checks.get(name)
        if check is None or check(item) is not None:
            return False
    for names in required:
        for name in names:
            if name in value:
                break
        else:
            return False
    return True
