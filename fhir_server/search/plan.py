"""Plan a parsed search as one SQLAlchemy Core SELECT over the index tables (https://hl7.org/fhir/R4/search.html).

`build(query)` selects (pk, content, sort_0, ...) of the current, non-deleted resources that match,
ordered by the `_sort` keys (NULLs last) then pk, after the `_cursor` position (keyset paging: no
OFFSET, page N costs what page 1 costs), with LIMIT count+1 so the caller knows whether a next page
exists. A parameter becomes `pk IN (SELECT resource_pk FROM idx_<type> WHERE param_id = ... AND
<value test>)`, which uses the (param_id, value, resource_pk) indexes, or an EXISTS probe by
resource_pk; the other index tests are nested in the first one's SELECT (see `_where`), and the
cursor's pk bound is repeated there, so the index scan starts at the cursor. Chains join
idx_reference to the target resource, `_has` looks up references back to the resource, composites
join their components on (resource_pk, grp). A sort on an indexed parameter reads its index table
in order, one row per resource (see `_sorted`). `count(query)` serves `_total=accurate`; `includes(...)` fetches
the `_include` / `_revinclude` resources of a page (https://hl7.org/fhir/R4/search.html#include).
Run them with `execute(conn, stmt)`: on PostgreSQL it keeps psycopg from preparing the statement
(https://www.psycopg.org/psycopg3/docs/advanced/prepare.html), because PostgreSQL then soon plans a
prepared search once for any values (a generic plan), which was 10-30x slower than a plan made for
the values at hand (bench/bench_search.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Executable,
    FromClause,
    Row,
    Select,
    String,
    and_,
    cast,
    column,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fhir_server.errors import Invalid
from fhir_server.search.cursor_signing import PROCESS_KEY
from fhir_server.search.query import (
    MAX_INCLUDE_DEPTH,
    Chain,
    Criterion,
    Filter,
    Has,
    Include,
    MissingValue,
    Param,
    SearchQuery,
    SortKey,
    encode_cursor,
)
from fhir_server.search.types.composite_query import CompositeValue
from fhir_server.search.types.date_query import DateValue
from fhir_server.search.types.number_query import NumberValue
from fhir_server.search.types.quantity_query import QuantityValue
from fhir_server.search.types.reference_query import ReferenceValue
from fhir_server.search.types.string_query import MAX_LEN, StringValue
from fhir_server.search.types.token_query import OfTypeValue, TextValue, TokenValue, ValueSetValue
from fhir_server.search.types.uri_query import UriValue, ancestors, is_url
from fhir_server.store import tables

DEFAULT_COUNT = 20
UCUM = "http://unitsofmeasure.org"
_R = tables.resource
_LIKE_ESCAPE = "!"


class Terminology(Protocol):
    """Value set expansion and subsumption, for the token modifiers :in, :not-in, :above, :below."""

    def expand(self, url: str) -> Iterable[tuple[str | None, str]]:
        """(system, code) of every concept in the value set."""
        ...

    def related(self, system: str | None, code: str, direction: str) -> Iterable[tuple[str | None, str]]:
        """The concept and those it subsumes (direction "below") or that subsume it ("above")."""
        ...


Canonicalize = Callable[[str, float], tuple[float, str] | None]


@dataclass(frozen=True)
class _Ctx:
    base_url: str | None
    terminology: Terminology | None
    canonical: Canonicalize | None


def execute(conn: Connection, stmt: Executable) -> CursorResult[Any]:
    """Run a search statement unprepared on PostgreSQL, so it is planned for its own values."""
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt)
    raw: Any = conn.connection.driver_connection
    saved = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        return conn.execute(stmt)
    finally:
        raw.prepare_threshold = saved


def _like_prefix(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _pid(col: Any, ids: Sequence[Any]) -> ColumnElement[bool]:
    return col == ids[0] if len(ids) == 1 else col.in_(ids)


def _member(pk: Any, pks: Select[Any], driver: bool, after: _PkBound | None = None) -> ColumnElement[bool]:
    """`pk` is among the resource_pk `pks` selects: IN when it drives the search, else an EXISTS probe."""
    # `after` repeats the page's pk bound inside the IN list, so the index scan starts at the cursor.
    source = pks.selected_columns[0]
    if driver:
        return pk.in_(pks if after is None else pks.where(after.test(source)))
    return pks.where(source == pk).exists()


def selective(c: Criterion) -> bool:
    """Tests that pick few rows by equality on an index: good drivers of a search."""
    if not isinstance(c, Filter):
        return True
    if c.modifier in ("missing", "not", "not-in", "text", "contains"):
        return False
    if c.param.type == "string":
        return c.modifier == "exact"
    if c.param.type == "uri":
        return c.modifier != "below"
    return c.param.type in ("token", "reference", "composite", "id")


@dataclass(frozen=True)
class _PkBound:
    """The keyset position of a page in pk order: pks after (or, going back, before) `pk`."""

    pk: int
    back: bool

    def test(self, col: Any) -> ColumnElement[bool]:
        return col < self.pk if self.back else col > self.pk


class _RowId(FunctionElement[Any]):
    """The physical id (ctid, SQLite rowid) of the index row one of whose columns is given."""

    # It tells apart the rows of one resource that hold the same sort value.
    name = "rowid"
    inherit_cache = True


def _rowid(element: _RowId, name: str, compiler: Any, **kw: Any) -> str:
    (col,) = element.clauses.clauses
    return str(compiler.process(column(name, _selectable=col.table), **kw))


@compiles(_RowId)
def _rowid_default(element: _RowId, compiler: Any, **kw: Any) -> str:
    return _rowid(element, "ctid", compiler, **kw)


@compiles(_RowId, "sqlite")
def _rowid_sqlite(element: _RowId, compiler: Any, **kw: Any) -> str:
    return _rowid(element, "rowid", compiler, **kw)


class _Unindexed(FunctionElement[str]):
    """A column the SQLite planner must not pick an index for (`+col`); plain elsewhere."""

    type = String()
    name = "unindexed"
    inherit_cache = True


@compiles(_Unindexed)
def _unindexed_default(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_Unindexed, "sqlite")
def _unindexed_sqlite(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def _default_canonical() -> Canonicalize | None:
    """UCUM canonical conversion as the indexer does it (fhir_server.search.ucum)."""
    from fhir_server.search import ucum

    def convert(code: str, value: float) -> tuple[float, str] | None:
        return ucum.to_canonical(value, code)

    return convert


# ---------------------------------------------------------------- value tests


def number_test(v: NumberValue, col: Any) -> ColumnElement[bool]:
    """Prefix semantics on a point value (https://hl7.org/fhir/R4/search.html#number)."""
    value, low, high = float(v.value), float(v.low), float(v.high)
    match v.prefix:
        case "eq":
            return and_(col >= low, col < high)
        case "ne":
            return or_(col < low, col >= high)
        case "gt" | "sa":
            return col > value
        case "lt" | "eb":
            return col < value
        case "ge":
            return col >= value
        case "le":
            return col <= value
        case _:  # ap
            return and_(col >= float(v.ap_low), col <= float(v.ap_high))


def date_test(v: DateValue, low: Any, high: Any) -> ColumnElement[bool]:
    """Prefix semantics on ranges (https://hl7.org/fhir/R4/search.html#prefix); all bounds inclusive."""
    inside = and_(low >= v.low, high <= v.high)
    match v.prefix:
        case "eq":
            return inside
        case "ne":
            return or_(low < v.low, high > v.high)
        case "gt":
            return high > v.high
        case "lt":
            return low < v.low
        case "ge":
            return or_(high > v.high, inside)
        case "le":
            return or_(low < v.low, inside)
        case "sa":
            return low > v.high
        case "eb":
            return high < v.low
        case _:  # ap: the ranges overlap once the search range is widened
            return and_(low <= v.ap_high, high >= v.ap_low)


def _token_test(v: TokenValue, t: Any) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    if v.code is not None:
        conds.append(t.c.code == v.code[:MAX_LEN])
    if v.system_given:
        conds.append(t.c.system == v.system if v.system is not None else t.c.system.is_(None))
    return and_(*conds)


def _concepts_test(concepts: Iterable[tuple[str | None, str]], t: Any) -> ColumnElement[bool]:
    by_system: dict[str | None, list[str]] = {}
    for system, code in concepts:
        by_system.setdefault(system, []).append(code)
    if not by_system:
        return false()
    return or_(
        *(
            and_(t.c.system == s if s is not None else t.c.system.is_(None), t.c.code.in_(codes))
            for s, codes in by_system.items()
        )
    )


class _Planner:
    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.after: _PkBound | None = None  # the page's pk bound, when pages are in pk order

    # ---- references ----

    def local(self, ref: Any) -> ColumnElement[bool]:
        """The reference row points to a resource on this server (relative, or absolute under the base)."""
        if not self.ctx.base_url:
            return ref.c.url.is_(None)
        own = literal(self.ctx.base_url + "/") + ref.c.target_type + "/" + ref.c.target_id
        return or_(ref.c.url.is_(None), ref.c.url == own)

    def reference_test(self, v: ReferenceValue, ref: Any) -> ColumnElement[bool]:
        if v.url is not None:
            conds = [ref.c.url == v.url]
            base = self.ctx.base_url
            if base and v.url.startswith(base + "/"):
                parts = v.url[len(base) + 1 :].split("/")
                if len(parts) in (2, 4) and parts[0] and parts[1]:
                    conds.append(
                        and_(
                            ref.c.target_id == parts[1],
                            ref.c.target_type == parts[0],
                            ref.c.url.is_(None),
                        )
                    )
            return or_(*conds)
        conds = [ref.c.target_id == v.id]
        if v.type is not None:
            conds.append(ref.c.target_type == v.type)
        conds.append(self.local(ref))
        return and_(*conds)

    # ---- one value against one index table (alias) ----

    def value_test(self, kind: str, modifier: str | None, v: Any, t: Any) -> ColumnElement[bool]:
        if kind == "string":
            assert isinstance(v, StringValue)
            if modifier == "exact":
                return t.c.exact == v.text[:MAX_LEN]
            if modifier == "contains":
                return t.c.norm.like("%" + _like_prefix(v.norm) + "%", escape=_LIKE_ESCAPE)
            return t.c.norm.like(_like_prefix(v.norm) + "%", escape=_LIKE_ESCAPE)
        if kind == "token":
            if isinstance(v, TextValue):
                return t.c.display.like(_like_prefix(v.text.lower()) + "%", escape=_LIKE_ESCAPE)
            if isinstance(v, OfTypeValue):
                return and_(t.c.system == v.type_system, t.c.code == v.type_code, t.c.display == v.value)
            if isinstance(v, ValueSetValue):
                if self.ctx.terminology is None:
                    raise Invalid(
                        f"Value set searches (:{modifier}) are not supported here", expression=v.url
                    )
                return _concepts_test(self.ctx.terminology.expand(v.url), t)
            assert isinstance(v, TokenValue)
            if modifier in ("above", "below"):
                if self.ctx.terminology is None or v.code is None:
                    raise Invalid(f"Subsumption searches (:{modifier}) are not supported here")
                return _concepts_test(self.ctx.terminology.related(v.system, v.code, modifier), t)
            return _token_test(v, t)
        if kind == "reference":
            if isinstance(v, TokenValue):  # :identifier, against idx_token
                return _token_test(v, t)
            assert isinstance(v, ReferenceValue)
            return self.reference_test(v, t)
        if kind == "date":
            assert isinstance(v, DateValue)
            return date_test(v, t.c.low, t.c.high)
        if kind == "number":
            assert isinstance(v, NumberValue)
            return number_test(v, t.c.value)
        if kind == "quantity":
            assert isinstance(v, QuantityValue)
            return self.quantity_test(v, t)
        if kind == "uri":
            assert isinstance(v, UriValue)
            if modifier == "above" and is_url(v.uri):
                return t.c.uri.in_(ancestors(v.uri))
            if modifier == "below" and is_url(v.uri):
                prefix = v.uri.rstrip("/") + "/"
                return or_(t.c.uri == v.uri, func.substr(t.c.uri, 1, len(prefix)) == prefix)
            return t.c.uri == v.uri
        raise Invalid(f"Parameters of type {kind} cannot be searched")  # pragma: no cover

    def quantity_test(self, v: QuantityValue, t: Any) -> ColumnElement[bool]:
        raw = number_test(v.number, t.c.value)
        if v.code is None:
            return raw
        if v.system is None:
            return and_(or_(t.c.code == v.code, t.c.unit == v.code), raw)
        exact = and_(t.c.system == v.system, t.c.code == v.code, raw)
        converted = self.canonical_number(v) if v.system == UCUM else None
        if converted is None:
            return exact
        number, code = converted
        return or_(exact, and_(t.c.canon_code == code, number_test(number, t.c.canon_value)))

    def canonical_number(self, v: QuantityValue) -> tuple[NumberValue, str] | None:
        """The search number converted to UCUM canonical units (each bound converted)."""
        convert = self.ctx.canonical
        if convert is None or v.code is None:
            return None
        n = v.number
        out = [convert(v.code, float(x)) for x in (n.value, n.low, n.high, n.ap_low, n.ap_high)]
        if any(o is None for o in out):
            return None
        codes = {o[1] for o in out if o is not None}
        if len(codes) != 1:
            return None
        vals = [Decimal(repr(o[0])) for o in out if o is not None]
        return NumberValue(n.prefix, vals[0], vals[1], vals[2], vals[3], vals[4]), codes.pop()

    # ---- criteria ----

    def criterion(
        self, c: Criterion, res: Any, types: tuple[str, ...], driver: bool = True, pk: Any = None
    ) -> ColumnElement[bool]:
        """The test of one criterion on `res`; index tests match `pk` (default res.pk; see _where)."""
        pk = res.c.pk if pk is None else pk
        if isinstance(c, Filter):
            return self.filter(c, res, driver, pk)
        if isinstance(c, Chain):
            return self.chain(c, pk)
        return self.has(c, res, types)

    def _after(self, pk: Any) -> _PkBound | None:
        return self.after if pk is _R.c.pk else None

    def filter(self, f: Filter, res: Any, driver: bool = True, pk: Any = None) -> ColumnElement[bool]:
        """`driver`: this test may select the candidate rows (pk IN (...)); otherwise it is written as
        a correlated EXISTS probe by resource_pk, which is cheaper when another test is selective."""
        p = f.param
        pk = res.c.pk if pk is None else pk
        if f.modifier == "missing":
            return or_(*(self.missing(p, pk, v.missing) for v in f.values if isinstance(v, MissingValue)))
        if p.type == "id":
            found = res.c.res_id.in_([v.code for v in f.values if isinstance(v, TokenValue)])
            return not_(found) if f.modifier == "not" else found
        if p.type == "lastUpdated":
            dates = [v for v in f.values if isinstance(v, DateValue)]
            return or_(*(date_test(v, res.c.last_updated, res.c.last_updated) for v in dates))
        negated = f.modifier in ("not", "not-in")
        found = _member(pk, self.pks(f), driver and not negated, self._after(pk))
        return not_(found) if negated else found

    def pks(self, f: Filter) -> Select[Any]:
        """The resource_pk of the index rows that match `f` (ignoring a :not / :not-in negation)."""
        p = f.param
        if p.type == "composite":
            return self.composite(f)
        if f.modifier in ("identifier", "of-type"):
            t = tables.idx_token.alias()
            ids = f.aux_ids
            kind = "token" if f.modifier == "of-type" else "reference"
        else:
            t = tables.INDEX_TABLES[p.type].alias()
            ids = p.ids
            kind = p.type
        modifier = None if f.modifier in ("not", "not-in") else f.modifier
        if f.modifier == "not-in":
            modifier = "in"
        tests = [self.value_test(kind, modifier, v, t) for v in f.values]
        return select(t.c.resource_pk).where(_pid(t.c.param_id, ids), or_(*tests))

    def missing(self, p: Param, pk: Any, missing: bool) -> ColumnElement[bool]:
        if p.on_resource_table:
            return false() if missing else true()
        if p.type == "composite":
            kinds = p.components[:1] or ("token",)
            t = tables.INDEX_TABLES[kinds[0]].alias()
        else:
            t = tables.INDEX_TABLES[p.type].alias()
        present = _member(
            pk, select(t.c.resource_pk).where(_pid(t.c.param_id, p.ids)), not missing, self._after(pk)
        )
        return not_(present) if missing else present

    def composite(self, f: Filter) -> Select[Any]:
        p = f.param
        aliases = [tables.INDEX_TABLES[k].alias() for k in p.components]
        first = aliases[0]
        joined: FromClause = first
        for a in aliases[1:]:
            joined = joined.join(
                a,
                and_(
                    a.c.resource_pk == first.c.resource_pk,
                    a.c.grp == first.c.grp,
                    a.c.param_id == first.c.param_id,
                ),
            )
        tests = []
        for v in f.values:
            assert isinstance(v, CompositeValue)
            tests.append(
                and_(
                    *(
                        self.value_test(kind, None, part, a)
                        for kind, part, a in zip(p.components, v.parts, aliases, strict=True)
                    )
                )
            )
        return (
            select(first.c.resource_pk).select_from(joined).where(_pid(first.c.param_id, p.ids), or_(*tests))
        )

    def chain(self, c: Chain, pk: Any) -> ColumnElement[bool]:
        ref = tables.idx_reference.alias()
        tgt = _R.alias()
        sub = (
            select(ref.c.resource_pk)
            .select_from(
                ref.join(tgt, and_(tgt.c.res_type == ref.c.target_type, tgt.c.res_id == ref.c.target_id))
            )
            .where(
                _pid(ref.c.param_id, c.param.ids),
                _pid(ref.c.target_type, c.target_types),
                self.local(ref),
                tgt.c.deleted == false(),
                self.criterion(c.criterion, tgt, c.target_types),
            )
        )
        after = self._after(pk)
        if after is not None:
            sub = sub.where(after.test(ref.c.resource_pk))
        return pk.in_(sub)

    def has(self, h: Has, res: Any, types: tuple[str, ...]) -> ColumnElement[bool]:
        ref = tables.idx_reference.alias()
        src = _R.alias()
        sources = select(src.c.pk).where(
            src.c.res_type == h.source_type,
            src.c.deleted == false(),
            self.criterion(h.criterion, src, (h.source_type,)),
        )
        conds = [_pid(ref.c.param_id, h.param.ids), self.local(ref), ref.c.resource_pk.in_(sources)]
        if len(types) == 1:
            return res.c.res_id.in_(select(ref.c.target_id).where(ref.c.target_type == types[0], *conds))
        return (
            select(ref.c.resource_pk)
            .where(ref.c.target_type == res.c.res_type, ref.c.target_id == res.c.res_id, *conds)
            .exists()
        )

    # ---- sort keys ----

    def sort_expr(self, key: SortKey, res: Any) -> Any:
        """The sort value of `res`: a resource column, or the min (max when descending) of its rows."""
        p = key.param
        if p.type == "id":
            return res.c.res_id
        if p.type == "lastUpdated":
            return res.c.last_updated
        t = tables.INDEX_TABLES[p.type].alias()
        agg = func.max if key.descending else func.min
        return (
            select(agg(key_column(key, t)))
            .where(t.c.resource_pk == res.c.pk, _pid(t.c.param_id, p.ids))
            .scalar_subquery()
        )


def key_column(key: SortKey, t: Any) -> Any:
    """The value of an index row `t` that a sort on `key` orders by (NULL: the row gives none)."""
    match key.param.type:
        case "string":
            return t.c.norm
        case "token":
            return t.c.code
        case "reference":
            return func.coalesce(t.c.target_type + "/" + t.c.target_id, t.c.url)
        case "date":
            return t.c.high if key.descending else t.c.low
        case "number" | "quantity":
            return t.c.value
        case _:
            return t.c.uri


def _compartment_test(
    compartment: tuple[str, str], types: tuple[str, ...], planner: _Planner
) -> ColumnElement[bool]:
    from fhir_server.search import compartment as comp
    from fhir_server.search import parameters

    kind, ident = compartment
    if kind != "Patient":
        raise Invalid(f"Searching the {kind} compartment is not supported", expression=kind)
    scope = types or parameters.resource_types()
    ids = [parameters.param_id(t, code) for t in scope for code in comp.patient_compartment_params(t)]
    owner = and_(_R.c.res_type == kind, _R.c.res_id == ident)
    if not ids:
        return owner
    ref = tables.idx_reference.alias()
    refs = select(ref.c.resource_pk).where(
        _pid(ref.c.param_id, ids), ref.c.target_type == kind, ref.c.target_id == ident, planner.local(ref)
    )
    if planner.after is not None:
        refs = refs.where(planner.after.test(ref.c.resource_pk))
    linked = _R.c.pk.in_(refs)
    return or_(linked, owner)


def _drives(c: Criterion) -> bool:
    """The criterion can select candidate rows from an index (rather than test given rows)."""
    if isinstance(c, Filter):
        return not c.param.on_resource_table and c.modifier not in ("missing", "not", "not-in")
    return True


def _nests(c: Criterion) -> bool:
    """The criterion tests index rows only, so it can test the anchor's resource_pk (see _where)."""
    return isinstance(c, Chain) or (isinstance(c, Filter) and not c.param.on_resource_table)


def _where(
    query: SearchQuery,
    planner: _Planner,
    compartment: tuple[str, str] | None,
    restrict: ColumnElement[bool] | None,
) -> list[ColumnElement[bool]]:
    """The conditions on `resource` rows, the index tests nested in the first one's SELECT."""
    # The first criterion, when it can select rows from an index, is the anchor: `pk IN (SELECT
    # resource_pk FROM idx_... WHERE ...)`, and the other index tests are nested in that SELECT, on
    # its resource_pk. So the matches are found in the index tables alone and only they are read
    # from `resource`; otherwise every row of the anchor was read before the others could test it.
    conds: list[ColumnElement[bool]] = [_R.c.deleted == false()]
    criteria = sorted(query.criteria, key=lambda c: not selective(c))  # stable: drivers first
    if query.types:
        # With an index-backed test to drive the search, SQLite must not start from ix_resource_type_updated.
        column = _Unindexed(_R.c.res_type) if criteria and _drives(criteria[0]) else _R.c.res_type
        conds.append(_pid(column, query.types))
    anchor: Select[Any] | None = None
    for n, c in enumerate(criteria):
        if n == 0 and isinstance(c, Filter) and _drives(c):
            anchor = planner.pks(c)
        elif anchor is not None and _nests(c):
            pk = anchor.selected_columns[0]
            anchor = anchor.where(planner.criterion(c, _R, query.types, driver=selective(c), pk=pk))
        else:
            conds.append(planner.criterion(c, _R, query.types, driver=n == 0 or selective(c)))
    if anchor is not None:
        if planner.after is not None:
            anchor = anchor.where(planner.after.test(anchor.selected_columns[0]))
        conds.append(_R.c.pk.in_(anchor))
    if compartment is not None:
        conds.append(_compartment_test(compartment, query.types, planner))
    if restrict is not None:
        conds.append(restrict)
    return conds


def _planner(
    base_url: str | None, terminology: Terminology | None, canonical: Canonicalize | None
) -> _Planner:
    return _Planner(
        _Ctx(
            base_url.rstrip("/") if base_url else None,
            terminology,
            canonical if canonical is not None else _default_canonical(),
        )
    )


def _after(col: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after `value` in the order (NULLs last)."""
    if value is None:
        return false()
    return or_(col < value if descending else col > value, col.is_(None))


def _before(col: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    """Rows strictly before `value` in the order (NULLs last, so every non-NULL is before a NULL)."""
    if value is None:
        return col.is_not(None)
    return col > value if descending else col < value


def _same(col: Any, value: Any) -> ColumnElement[bool]:
    return col.is_(None) if value is None else col == value


def build(
    query: SearchQuery,
    *,
    compartment: tuple[str, str] | None = None,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
    terminology: Terminology | None = None,
    canonical: Canonicalize | None = None,
    default_count: int = DEFAULT_COUNT,
) -> Select[Any]:
    """The page query: rows (pk, content, sort_0, ...) in order, after the cursor, LIMIT count+1.

    `compartment` is (compartment type, id), e.g. ("Patient", "123"); `restrict` is an extra condition
    on `tables.resource` (e.g. access rules); `base_url` lets absolute references to this server match
    relative ones; `terminology` serves :in/:not-in/:above/:below on tokens.
    """
    planner = _planner(base_url, terminology, canonical)
    limit = (query.count if query.count is not None else default_count) + 1
    cursor = query.cursor
    back = cursor is not None and cursor.before
    if not query.sort:
        if cursor is not None:  # repeated inside the driving IN list, so its index scan starts there
            planner.after = _PkBound(cursor.pk, back)
        stmt = select(_R.c.pk, _R.c.content).where(*_where(query, planner, compartment, restrict))
        if cursor is not None:
            stmt = stmt.where(_PkBound(cursor.pk, back).test(_R.c.pk))
        return stmt.order_by(_R.c.pk.desc() if back else _R.c.pk).limit(limit)
    return _sorted(query, planner, _where(query, planner, compartment, restrict), limit)


def _keyset(
    cols: Sequence[Any], keys: Sequence[SortKey], values: Sequence[Any], pk: int, back: bool
) -> ColumnElement[bool]:
    """Rows after (going back: before) the position (values, pk) in the order of `cols`, then pk."""
    step = _before if back else _after
    alternatives: list[ColumnElement[bool]] = []
    for i, (col, key) in enumerate(zip(cols, keys, strict=True)):
        prior = [_same(c, v) for c, v in zip(cols[:i], values[:i], strict=True)]
        alternatives.append(and_(*prior, step(col, values[i], key.descending)))
    same = [_same(c, v) for c, v in zip(cols, values, strict=True)]
    alternatives.append(and_(*same, _PkBound(pk, back).test(_R.c.pk)))
    return or_(*alternatives)


def _ordering(cols: Sequence[Any], keys: Sequence[SortKey], back: bool, pk: Any, plain: int = 0) -> list[Any]:
    """ORDER BY the sort columns (NULLs last) then pk; reversed going back."""
    # The first `plain` columns hold no NULLs and get no NULLS FIRST/LAST, so an index gives the order.
    order: list[Any] = []
    for i, (c, k) in enumerate(zip(cols, keys, strict=True)):
        term = c.asc() if k.descending == back else c.desc()
        order.append(term if i < plain else term.nulls_first() if back else term.nulls_last())
    return [*order, pk.desc() if back else pk]


def _sargable(col: Any, value: Any, key: SortKey, back: bool) -> ColumnElement[bool]:
    """The keyset test of the first sort key as a range its index scan can start from."""
    return col >= value if key.descending == back else col <= value


def _sorted(
    query: SearchQuery, planner: _Planner, conds: list[ColumnElement[bool]], limit: int
) -> Select[Any]:
    """The page of a sorted search, read in the order of the first sort key's index."""
    # The first key of an index-backed parameter is read from a join with its index table, one row
    # per resource: the row holding the resource's min (descending: max) value. So a page can be read
    # in index order and stop after `limit` rows, with the cursor as the start of the index range.
    # The resources without a value come after all others (NULLs last) and are read only when the
    # rows with a value do not fill the page (a second SELECT behind a one-time test on the first
    # one's count).
    cursor = query.cursor
    back = cursor is not None and cursor.before
    head, rest = query.sort[0], query.sort[1:]
    rest_cols = [planner.sort_expr(k, _R) for k in rest]
    if head.param.on_resource_table:  # _id, _lastUpdated: a column of the resource, never NULL
        col = planner.sort_expr(head, _R)
        stmt = select(_R.c.pk, _R.c.content, *_labels([col, *rest_cols])).where(*conds)
        if cursor is not None:
            stmt = stmt.where(
                _sargable(col, cursor.keys[0], head, back),
                _keyset([col, *rest_cols], query.sort, cursor.keys, cursor.pk, back),
            )
        return stmt.order_by(*_ordering([col, *rest_cols], query.sort, back, _R.c.pk, plain=1)).limit(limit)

    ids = head.param.ids
    t = tables.INDEX_TABLES[head.param.type].alias()
    col = key_column(head, t)
    other = t.alias()
    better = or_(
        key_column(head, other) > col if head.descending else key_column(head, other) < col,
        and_(key_column(head, other) == col, _RowId(other.c.resource_pk) < _RowId(t.c.resource_pk)),
    )
    keyed = (
        select(_R.c.pk, _R.c.content, *_labels([col, *rest_cols]))
        .select_from(_R.join(t, t.c.resource_pk == _R.c.pk))
        .where(
            *conds,
            _pid(t.c.param_id, ids),
            col.is_not(None),
            ~select(other.c.resource_pk)
            .where(other.c.resource_pk == t.c.resource_pk, _pid(other.c.param_id, ids), better)
            .exists(),
        )
    )
    bare = t.alias()
    unkeyed = select(_R.c.pk, _R.c.content, *_labels([cast(null(), col.type), *rest_cols])).where(
        *conds,
        ~select(bare.c.resource_pk)
        .where(bare.c.resource_pk == _R.c.pk, _pid(bare.c.param_id, ids), key_column(head, bare).is_not(None))
        .exists(),
    )
    keyed_order = _ordering([col, *rest_cols], query.sort, back, _R.c.pk, plain=1)
    unkeyed_order = _ordering(rest_cols, rest, back, _R.c.pk)
    zones: list[Select[Any]]
    if cursor is None:
        zones = [keyed.order_by(*keyed_order), unkeyed.order_by(*unkeyed_order)]
    elif cursor.keys[0] is not None:
        keyed = keyed.where(
            _sargable(col, cursor.keys[0], head, back),
            _keyset([col, *rest_cols], query.sort, cursor.keys, cursor.pk, back),
        ).order_by(*keyed_order)
        zones = [keyed] if back else [keyed, unkeyed.order_by(*unkeyed_order)]
    else:
        unkeyed = unkeyed.where(_keyset(rest_cols, rest, cursor.keys[1:], cursor.pk, back))
        zones = (
            [unkeyed.order_by(*unkeyed_order), keyed.order_by(*keyed_order)]
            if back
            else [unkeyed.order_by(*unkeyed_order)]
        )
    if len(zones) == 1:
        return zones[0].limit(limit)
    first = zones[0].limit(limit).cte("head")
    first_full = select(func.count()).select_from(first).scalar_subquery() >= limit
    second = zones[1].where(not_(first_full)).limit(limit).subquery("tail")
    both = union_all(select(first), select(second)).subquery("m")
    cols = [both.c[f"sort_{i}"] for i in range(len(query.sort))]
    return select(both).order_by(*_ordering(cols, query.sort, back, both.c.pk)).limit(limit)


def _labels(cols: Sequence[Any]) -> list[Any]:
    return [c.label(f"sort_{i}") for i, c in enumerate(cols)]


def next_cursor(query: SearchQuery, row: Row[Any], key: bytes = PROCESS_KEY) -> str:
    """The `_cursor` value that continues after `row` (the last row shown of a page), signed with `key`."""
    mapping = row._mapping
    keys = [mapping[f"sort_{i}"] for i in range(len(query.sort))]
    return encode_cursor(query.sort_signature, keys, int(mapping["pk"]), key=key)


def previous_cursor(query: SearchQuery, row: Row[Any], key: bytes = PROCESS_KEY) -> str:
    """The `_cursor` value for the page that ends just before `row` (the first row shown of a page)."""
    mapping = row._mapping
    keys = [mapping[f"sort_{i}"] for i in range(len(query.sort))]
    return encode_cursor(query.sort_signature, keys, int(mapping["pk"]), before=True, key=key)


def count(
    query: SearchQuery,
    *,
    compartment: tuple[str, str] | None = None,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
    terminology: Terminology | None = None,
    canonical: Canonicalize | None = None,
) -> Select[Any]:
    """SELECT count(*) of every match (ignores sort, paging and the cursor), for `_total=accurate`."""
    planner = _planner(base_url, terminology, canonical)
    matches = select(_R.c.pk).where(*_where(query, planner, compartment, restrict)).subquery()
    return select(func.count()).select_from(matches)


def condition(
    query: SearchQuery, *, compartment: tuple[str, str] | None = None, base_url: str | None = None
) -> ColumnElement[bool]:
    """The query's criteria (types, compartment, not deleted) as ONE condition on `tables.resource`:
    what access rules AND into a search as `restrict` (auth/enforce.py)."""
    return and_(*_where(query, _planner(base_url, None, None), compartment, None))


def _include_stmt(inc: Include, frontier: Sequence[int], planner: _Planner) -> Select[Any]:
    ref = tables.idx_reference.alias()
    conds: list[ColumnElement[bool]] = [planner.local(ref), _R.c.deleted == false()]
    if inc.param_code != "*" or inc.source_type != "*":
        if not inc.param_ids:
            conds.append(false())
        else:
            conds.append(_pid(ref.c.param_id, inc.param_ids))
    if not inc.reverse:
        conds.append(ref.c.resource_pk.in_(frontier))
        if inc.target_type is not None:
            conds.append(ref.c.target_type == inc.target_type)
        join = ref.join(_R, and_(_R.c.res_type == ref.c.target_type, _R.c.res_id == ref.c.target_id))
        return select(_R.c.pk, _R.c.content).select_from(join).where(*conds)
    page = _R.alias()
    if inc.target_type is not None:
        conds.append(ref.c.target_type == inc.target_type)
    if inc.source_type != "*":
        conds.append(_R.c.res_type == inc.source_type)
    join = ref.join(_R, _R.c.pk == ref.c.resource_pk).join(
        page, and_(page.c.res_type == ref.c.target_type, page.c.res_id == ref.c.target_id)
    )
    return select(_R.c.pk, _R.c.content).select_from(join).where(page.c.pk.in_(frontier), *conds)


def includes(
    conn: Connection,
    query: SearchQuery,
    page_pks: Sequence[int],
    *,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
) -> list[Row[Any]]:
    """The resources `_include`d / `_revinclude`d by a page: rows (pk, content), none repeated and none
    of the page itself. `:iterate` directives are applied again to what was included, a few rounds deep."""
    if not query.includes or not page_pks:
        return []
    planner = _planner(base_url, None, None)
    seen = set(page_pks)
    out: list[Row[Any]] = []
    frontier = list(page_pks)
    directives = list(query.includes)
    for _ in range(MAX_INCLUDE_DEPTH):
        fresh: list[Row[Any]] = []
        for inc in directives:
            stmt = _include_stmt(inc, frontier, planner)
            if restrict is not None:
                stmt = stmt.where(restrict)
            for row in execute(conn, stmt.order_by(_R.c.pk)):
                if row.pk not in seen:
                    seen.add(row.pk)
                    fresh.append(row)
        out.extend(fresh)
        directives = [i for i in query.includes if i.iterate]
        frontier = [r.pk for r in fresh]
        if not fresh or not directives:
            break
    return out
