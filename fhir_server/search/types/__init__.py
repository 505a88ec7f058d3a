"""Search parameter types (https://hl7.org/fhir/R4/search.html#ptypes): `REGISTRY`, one entry per type.

Each type is one module here owning its modifiers, value parsing, index rows, SQL test and sort
column, ending with its `SearchType` (search/types/base.py). To add a type: write its module and
add its entry below (docs/for-engineers.md, "How to add a search parameter type").
"""

from __future__ import annotations

from types import MappingProxyType

from fhir_server.search.types.all_resources import ID, LAST_UPDATED
from fhir_server.search.types.base import RowSink, SearchType
from fhir_server.search.types.composite import COMPOSITE
from fhir_server.search.types.date import DATE
from fhir_server.search.types.list_param import LIST
from fhir_server.search.types.number import NUMBER
from fhir_server.search.types.quantity import QUANTITY
from fhir_server.search.types.reference import REFERENCE
from fhir_server.search.types.string import STRING
from fhir_server.search.types.text import TEXT
from fhir_server.search.types.token import TOKEN
from fhir_server.search.types.uri import URI

__all__ = ["REGISTRY", "RowSink", "SearchType"]

REGISTRY: MappingProxyType[str, SearchType] = MappingProxyType(
    {
        t.code: t
        for t in (
            STRING,
            TOKEN,
            REFERENCE,
            DATE,
            NUMBER,
            QUANTITY,
            URI,
            COMPOSITE,
            ID,
            LAST_UPDATED,
            TEXT,
            LIST,
        )
    }
)
"""The searchable types by code; a parameter of any other type (`special`) is refused as unsupported."""
