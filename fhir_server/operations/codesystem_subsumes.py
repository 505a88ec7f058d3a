"""CodeSystem/$subsumes: how two concepts relate (https://hl7.org/fhir/R4/codesystem-operation-subsumes.html).

`[base]/CodeSystem/$subsumes?system=...&codeA=...&codeB=...[&version=...]`, or POST with `codingA` /
`codingB`, over the hierarchy of the code systems the server ships. The answer is a Parameters with
`outcome`: equivalent | subsumes | subsumed-by | not-subsumed
(https://hl7.org/fhir/R4/codesystem-concept-subsumption-outcome.html). An unknown system or version
is a 404, a code not in the system a 400.
"""

from __future__ import annotations

from typing import Any

from terminology import subsumption

from ..errors import Invalid
from .codesystem_lookup import code_system, system_and_code
from .parameters import OperationInput, parameters, part


def subsumes(params: OperationInput) -> dict[str, Any]:
    """The Parameters answer: outcome."""
    system_a, code_a = system_and_code(params, "codeA", "codingA")
    system_b, code_b = system_and_code(params, "codeB", "codingB")
    system = params.text("system") or system_a or system_b
    for other in (system_a, system_b):
        if other is not None and system is not None and other != system:
            raise Invalid(f"Both codes must be of the code system {system}, not {other}", expression="system")
    cs = code_system(system, params.text("version"))
    return parameters([part("outcome", "code", subsumption.outcome(cs.url, code_a, code_b))])
