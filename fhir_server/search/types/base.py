"""What a search parameter type is made of (https://hl7.org/fhir/R4/search.html#ptypes): `SearchType`.

One module per type (search/types/<type>.py) owns its modifiers, value parsing, index rows, SQL test
and sort column, and ends with its `SearchType`; search/types/__init__.py lists them in `REGISTRY`,
where the parser (search/query.py), the planner (search/plan.py) and the indexer (search/index.py)
look a type up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, literal, or_

RowSink = dict[str, list[tuple[Any, ...]]]
"""Index rows by table kind, as tuples in the column order of the table without resource_pk."""

ValuesFn = Callable[[list[Any], str, int, int, RowSink, "int | None"], None]
"""`values(elements, fhir_type, param_id, grp, sink, aux_param_id)`: append the index rows of the
elements a parameter's expression selected (all of FHIR type `fhir_type`, or `"*"`: infer from the
JSON shape) to `sink[kind]` (docs/index-rows.md)."""

Canonicalize = Callable[[str, float], tuple[float, str] | None]

DocumentFn = Callable[[dict[str, Any], int, RowSink], None]
"""`document(resource, param_id, sink)`: the index rows of a parameter computed from the whole
resource rather than from an expression (full text: search/types/text.py)."""


class Terminology(Protocol):
    """Value set expansion and subsumption, for the token modifiers :in, :not-in, :above, :below."""

    def expand(self, url: str) -> Iterable[tuple[str | None, str]]:
        """(system, code) of every concept in the value set."""
        ...

    def related(self, system: str | None, code: str, direction: str) -> Iterable[tuple[str | None, str]]:
        """The concept and those it subsumes (direction "below") or that subsume it ("above")."""
        ...


@dataclass(frozen=True)
class SqlContext:
    """What a SQL test may need beyond the value: the server base, terminology, UCUM conversion."""

    base_url: str | None
    terminology: Terminology | None
    canonical: Canonicalize | None

    def local(self, ref: Any) -> ColumnElement[bool]:
        """The reference row points to a resource on this server (relative, or absolute under the base)."""
        if not self.base_url:
            return ref.c.url.is_(None)
        own = literal(self.base_url + "/") + ref.c.target_type + "/" + ref.c.target_id
        return or_(ref.c.url.is_(None), ref.c.url == own)


@dataclass(frozen=True)
class Parsing:
    """What a value parser may need beyond the text: where it comes from and the search time."""

    name: str  # the parameter as written, for error messages
    modifier: str | None
    now_us: int  # anchors the `ap` prefix on dates
    type_modifier: str | None = None  # the `:[type]` of a reference
    components: tuple[Callable[[str], Any], ...] = ()  # the component parsers of a composite


SqlTest = Callable[[SqlContext, "str | None", Any, Any], ColumnElement[bool]]
"""`test(ctx, modifier, value, t)`: one parsed value against one row of the index table alias `t`."""


def of_params(col: Any, ids: Sequence[Any]) -> ColumnElement[bool]:
    """The row belongs to one of the parameters `ids` (param_id, or any column compared to a list)."""
    return col == ids[0] if len(ids) == 1 else col.in_(ids)


def like_prefix(text: str) -> str:
    """`text` escaped for LIKE with escape character `LIKE_ESCAPE`."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


LIKE_ESCAPE = "!"


def _never_selective(modifier: str | None) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class SearchType:
    """One search parameter type: everything the parser, planner and indexer need from it."""

    code: str  # SearchParamType code, or "id" / "lastUpdated" for `_id` and `_lastUpdated`
    modifiers: frozenset[str]
    parser: Callable[[Parsing], Callable[[str], Any]]  # the parser of one value given the modifier
    test: SqlTest | None = None  # one value against one index row; None: not in an index table
    sort_column: Callable[[Any, bool], Any] | None = None  # (row, descending) -> value; None: unsortable
    selective: Callable[[str | None], bool] = _never_selective  # equality on an index, given the modifier
    values: ValuesFn | None = None  # the index rows of the type's own table
    aux_modifier: str | None = None  # the modifier searching the auxiliary token rows ...
    aux_suffix: str | None = None  # ... indexed under the parameter code + this suffix
    type_modifiers: bool = False  # a resource type is a modifier too (`:[type]` on references)
    components: bool = False  # a value is one value per component type (composite)
    rows: Callable[[SqlContext, Any, Sequence[Any], Mapping[str, SearchType]], Select[Any]] | None = None
    """The resource_pk matching (param, values) when not one `test` per row (composite); given the REGISTRY."""
    column_test: Callable[[str | None, Sequence[Any], Any], ColumnElement[bool]] | None = (
        None  # on `resource`
    )
    documents: Callable[[str], tuple[str | None, DocumentFn]] | None = None
    """For a parameter without an expression, given its code: the top-level element its rows need
    (None: any resource) and the function writing them from the whole resource."""
