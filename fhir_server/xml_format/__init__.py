"""FHIR XML (https://hl7.org/fhir/R4/xml.html): `parse` (XML bytes to a resource's JSON) and `serialise`."""

from .parse import parse
from .serialize import NotSerialisable, serialise

__all__ = ["NotSerialisable", "parse", "serialise"]
