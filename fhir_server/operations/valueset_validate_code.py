"""ValueSet/$validate-code: is a code in a value set (https://hl7.org/fhir/R4/valueset-operation-validate-code.html).

`[base]/ValueSet/$validate-code?url=...&system=...&code=...[&display=...]`, `ValueSet/[id]/$validate-code`,
or POST with a `coding` or `codeableConcept` (valid when one of its codings is). The answer is a
Parameters with `result`, `message` (why not, or a warning about the display) and `display`.
An abstract concept is valid only with `abstract=true`. The value set is found as for $expand: 404
when unknown, 422 when it cannot be expanded.
"""

from __future__ import annotations

from typing import Any

from ..errors import Invalid
from ..interactions.context import Context
from ..store.sql import Tx
from .parameters import OperationInput, parameters, part
from .valueset_expand import expansion_for


def _codings(params: OperationInput) -> list[dict[str, Any]]:
    code = params.text("code")
    coding = params.complex("coding")
    concept = params.complex("codeableConcept")
    given = [x for x in (code, coding, concept) if x is not None]
    if len(given) != 1:
        raise Invalid("Give exactly one of 'code' (with 'system'), 'coding' or 'codeableConcept'", "code")
    if code is not None:
        system = params.text("system")
        if system is None:
            raise Invalid("A 'code' needs its 'system'", expression="system")
        out: dict[str, Any] = {"system": system, "code": code}
        display = params.text("display")
        if display is not None:
            out["display"] = display
        return [out]
    if coding is not None:
        return [coding]
    assert concept is not None
    codings = concept.get("coding")
    if not isinstance(codings, list) or not codings or not all(isinstance(c, dict) for c in codings):
        raise Invalid("The codeableConcept has no codings", expression="codeableConcept")
    return codings


def _same_display(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def validate_code(ctx: Context, tx: Tx, params: OperationInput, res_id: str | None = None) -> dict[str, Any]:
    """The Parameters answer: result, message, display."""
    codings = _codings(params)
    expansion = expansion_for(ctx, tx, params, res_id)
    allow_abstract = params.boolean("abstract") is True
    name = expansion.url or res_id or "the value set"
    problems: list[str] = []
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(code, str) or not code:
            problems.append("A coding has no code")
            continue
        label = f"{system}|{code}" if system else code
        found = expansion.find(system if isinstance(system, str) else None, code)
        if found is None:
            problems.append(f"The code {label} is not in the value set {name}")
            continue
        if found.abstract and not allow_abstract:
            problems.append(f"The code {label} is abstract and cannot be used here (abstract=true allows it)")
            continue
        out = [part("result", "boolean", True)]
        display = coding.get("display")
        if isinstance(display, str) and found.display and not _same_display(display, found.display):
            out.append(
                part("message", "string", f"The display of {label} is '{found.display}', not '{display}'")
            )
        if found.display:
            out.append(part("display", "string", found.display))
        return parameters(out)
    return parameters([part("result", "boolean", False), part("message", "string", "; ".join(problems))])
