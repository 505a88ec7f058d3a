"""`_id` and `_lastUpdated` (https://hl7.org/fhir/R4/search.html#all): answered from the resource table.

They have no index table: their test (`column_test`) and sort column are columns of `resource`
(res_id, last_updated), and they are searched as the pseudo-types "id" and "lastUpdated".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, not_, or_

from fhir_server.search.types import date
from fhir_server.search.types.base import Parsing, SearchType
from fhir_server.search.types.token import TokenValue, parse_token
from fhir_server.search.values import fail


def parse_id(text: str, name: str) -> TokenValue:
    """A resource id, as a token without a system."""
    token = parse_token(text, name)
    if token.system_given or not token.code:
        fail(name, f"{text!r} is not a resource id")
    return token


def _id_parser(p: Parsing) -> Callable[[str], TokenValue]:
    return partial(parse_id, name=p.name)


def _id_test(modifier: str | None, values: Sequence[Any], res: Any) -> ColumnElement[bool]:
    found = res.c.res_id.in_([v.code for v in values if isinstance(v, TokenValue)])
    return not_(found) if modifier == "not" else found


def _last_updated_test(modifier: str | None, values: Sequence[Any], res: Any) -> ColumnElement[bool]:
    dates = [v for v in values if isinstance(v, date.DateValue)]
    return or_(*(date.date_test(v, res.c.last_updated, res.c.last_updated) for v in dates))


ID = SearchType(
    "id",
    frozenset({"missing", "not"}),
    _id_parser,
    sort_column=lambda res, descending: res.c.res_id,
    selective=lambda modifier: True,
    column_test=_id_test,
)
LAST_UPDATED = SearchType(
    "lastUpdated",
    frozenset({"missing"}),
    date.parser,
    sort_column=lambda res, descending: res.c.last_updated,
    column_test=_last_updated_test,
)
