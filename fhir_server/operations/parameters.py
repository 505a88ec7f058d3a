"""Operation inputs and outputs as a Parameters resource (https://hl7.org/fhir/R4/parameters.html, https://hl7.org/fhir/R4/operations.html#request).

An operation takes its parameters from the URL (GET, primitive values only) or from a Parameters
body (POST); URL parameters of a POST are added to the body's. `_format` and `_pretty` are not
operation parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Invalid

NOT_PARAMETERS = frozenset({"_format", "_pretty"})
MAX_PARAMETERS = 1000


@dataclass(frozen=True)
class OperationInput:
    """Parameter name -> values: strings from a URL, value[x] values or resources from a body."""

    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def one(self, name: str) -> Any | None:
        """The single value of a 0..1 parameter (400 when it is repeated)."""
        found = self.values.get(name, ())
        if len(found) > 1:
            raise Invalid(f"Parameter '{name}' may be given only once", expression=name)
        return found[0] if found else None

    def text(self, name: str) -> str | None:
        """A primitive parameter as a string (None when absent; empty strings count as absent)."""
        value = self.one(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool | dict | list):
            raise Invalid(f"Parameter '{name}' must be a primitive value", expression=name)
        return str(value)

    def boolean(self, name: str) -> bool | None:
        """A boolean parameter: true / false."""
        value = self.one(name)
        if value is None or isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise Invalid(f"Parameter '{name}' must be true or false", expression=name)

    def integer(self, name: str, minimum: int = 0) -> int | None:
        """A non-negative integer parameter (at least `minimum`)."""
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"Parameter '{name}' must be an integer of at least {minimum}", expression=name)
        return value

    def complex(self, name: str) -> dict[str, Any] | None:
        """A complex-typed value (Coding, CodeableConcept) or a resource parameter."""
        value = self.one(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise Invalid(f"Parameter '{name}' must be given in a Parameters body", expression=name)
        return value


def from_query(pairs: Iterable[tuple[str, str]]) -> OperationInput:
    """The parameters of a URL query string (already decoded)."""
    values: dict[str, list[Any]] = {}
    for n, (name, value) in enumerate(pairs):
        if n >= MAX_PARAMETERS:
            raise Invalid("Too many parameters")
        if name not in NOT_PARAMETERS:
            values.setdefault(name, []).append(value)
    return OperationInput({k: tuple(v) for k, v in values.items()})


def _value(param: Mapping[str, Any], name: str) -> Any:
    if "resource" in param:
        return param["resource"]
    keys = [k for k in param if k.startswith("value")]
    if len(keys) != 1:
        raise Invalid(f"Parameter '{name}' needs exactly one value[x] or resource", "Parameters.parameter")
    return param[keys[0]]


def from_body(body: Any, query: Iterable[tuple[str, str]] = ()) -> OperationInput:
    """The parameters of a Parameters resource, plus those of the URL."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Invalid("The body of an operation must be a Parameters resource", "resourceType")
    params = body.get("parameter", [])
    if not isinstance(params, list) or len(params) > MAX_PARAMETERS:
        raise Invalid("Parameters.parameter must be a list", "Parameters.parameter")
    values: dict[str, list[Any]] = {}
    for param in params:
        name = param.get("name") if isinstance(param, dict) else None
        if not isinstance(name, str) or not name:
            raise Invalid("Every parameter needs a name", "Parameters.parameter.name")
        if "part" in param:
            raise Invalid(f"Parameter '{name}' has parts, which no parameter here takes", name)
        values.setdefault(name, []).append(_value(param, name))
    for name, more in from_query(query).values.items():
        values.setdefault(name, []).extend(more)
    return OperationInput({k: tuple(v) for k, v in values.items()})


def part(name: str, kind: str, value: Any) -> dict[str, Any]:
    """One output parameter `{"name": name, "value<Kind>": value}`."""
    return {"name": name, f"value{kind[0].upper()}{kind[1:]}": value}


def group(name: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One output parameter made of parts."""
    return {"name": name, "part": parts}


def parameters(params: list[dict[str, Any]]) -> dict[str, Any]:
    """A Parameters resource."""
    return {"resourceType": "Parameters", "parameter": params}
