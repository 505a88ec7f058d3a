"""The SQL of search criteria (https://hl7.org/fhir/R4/search.html#ptypes): conditions on `resource` rows.

A parameter becomes `pk IN (SELECT resource_pk FROM idx_<type> WHERE param_id = ... AND <value
test>)`, which uses the (param_id, value, resource_pk) indexes, or an EXISTS probe by resource_pk;
the value test is the parameter type's (search/types/<type>.py, looked up in REGISTRY). `where(...)`
nests the other index tests in the first one's SELECT and repeats the page cursor's pk bound there,
so the index scan starts at the cursor. Chains and `_has` are in search/chains.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, false, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fhir_server.errors import Invalid
from fhir_server.search import chains
from fhir_server.search.paging import PkBound
from fhir_server.search.query import Chain, Criterion, Filter, MissingValue, Param, SearchQuery
from fhir_server.search.types import REGISTRY, composite
from fhir_server.search.types.base import SqlContext, of_params
from fhir_server.store import tables

_R = tables.resource


def _member(pk: Any, pks: Select[Any], driver: bool, after: PkBound | None = None) -> ColumnElement[bool]:
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
    return REGISTRY[c.param.type].selective(c.modifier)


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


class Planner:
    """Plans criteria with a SqlContext; `after` is the page's pk bound when pages are in pk order."""

    def __init__(self, ctx: SqlContext) -> None:
        self.ctx = ctx
        self.after: PkBound | None = None

    def criterion(
        self, c: Criterion, res: Any, types: tuple[str, ...], driver: bool = True, pk: Any = None
    ) -> ColumnElement[bool]:
        """The test of one criterion on `res`; index tests match `pk` (default res.pk; see where)."""
        pk = res.c.pk if pk is None else pk
        if isinstance(c, Filter):
            return self.filter(c, res, driver, pk)
        if isinstance(c, Chain):
            return chains.chain(self, c, pk)
        return chains.has(self, c, res, types)

    def after_for(self, pk: Any) -> PkBound | None:
        """The page's pk bound, when `pk` is the searched resource's own pk."""
        return self.after if pk is _R.c.pk else None

    def filter(self, f: Filter, res: Any, driver: bool = True, pk: Any = None) -> ColumnElement[bool]:
        """`driver`: this test may select the candidate rows (pk IN (...)); otherwise it is written as
        a correlated EXISTS probe by resource_pk, which is cheaper when another test is selective."""
        p = f.param
        pk = res.c.pk if pk is None else pk
        if f.modifier == "missing":
            return or_(*(self.missing(p, pk, v.missing) for v in f.values if isinstance(v, MissingValue)))
        column_test = REGISTRY[p.type].column_test
        if column_test is not None:  # _id, _lastUpdated
            return column_test(f.modifier, f.values, res)
        negated = f.modifier in ("not", "not-in")
        found = _member(pk, self.pks(f), driver and not negated, self.after_for(pk))
        return not_(found) if negated else found

    def pks(self, f: Filter) -> Select[Any]:
        """The resource_pk of the index rows that match `f` (ignoring a :not / :not-in negation)."""
        p = f.param
        search_type = REGISTRY[p.type]
        if search_type.rows is not None:
            return search_type.rows(self.ctx, p, f.values, REGISTRY)
        if f.modifier is not None and f.modifier == search_type.aux_modifier:
            t = tables.idx_token.alias()  # the auxiliary rows (:identifier, :of-type) are token rows
            ids = f.aux_ids
        else:
            t = tables.INDEX_TABLES[p.type].alias()
            ids = p.ids
        modifier = None if f.modifier in ("not", "not-in") else f.modifier
        if f.modifier == "not-in":
            modifier = "in"
        test = search_type.test
        if test is None:  # pragma: no cover - every type has a test, rows or column_test
            raise Invalid(f"Parameters of type {p.type} cannot be searched")
        tests = [test(self.ctx, modifier, v, t) for v in f.values]
        return select(t.c.resource_pk).where(of_params(t.c.param_id, ids), or_(*tests))

    def missing(self, p: Param, pk: Any, missing: bool) -> ColumnElement[bool]:
        if p.on_resource_table:
            return false() if missing else true()
        if REGISTRY[p.type].components:
            options = composite.present(p)
        else:
            t = tables.INDEX_TABLES[p.type].alias()
            options = [[select(t.c.resource_pk).where(of_params(t.c.param_id, p.ids))]]
        after = self.after_for(pk)
        present = or_(*(and_(*(_member(pk, rows, not missing, after) for rows in o)) for o in options))
        return not_(present) if missing else present


def _compartment_test(
    compartment: tuple[str, str], types: tuple[str, ...], planner: Planner
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
        of_params(ref.c.param_id, ids),
        ref.c.target_type == kind,
        ref.c.target_id == ident,
        planner.ctx.local(ref),
    )
    if planner.after is not None:
        refs = refs.where(planner.after.test(ref.c.resource_pk))
    linked = _R.c.pk.in_(refs)
    return or_(linked, owner)


def _anchor_order(c: Criterion) -> tuple[bool, bool]:
    """Selective tests first, and among them a composite on the resource itself (Observation
    `code-value-quantity`: its components' tables joined, search/types/composite.py `_elements`).

    Nested in another test's SELECT, such a join misled PostgreSQL: it estimated the resources
    matching `patient=X&code-value-quantity=...$gt90` (2 of 200,000) from the quantity rows alone
    (7,434) and walked `resource` in pk order under the LIMIT, 96-118 ms; as the anchor, with the
    patient's rows nested in it, 3-6 ms, and every other pairing measured was as fast or faster
    (bench/README.md "Fifteenth session")."""
    joined = isinstance(c, Filter) and bool(c.param.joined) and not c.param.ids and c.modifier is None
    return not selective(c), not joined


def _drives(c: Criterion) -> bool:
    """The criterion can select candidate rows from an index (rather than test given rows)."""
    if isinstance(c, Filter):
        return not c.param.on_resource_table and c.modifier not in ("missing", "not", "not-in")
    return True


def _nests(c: Criterion) -> bool:
    """The criterion tests index rows only, so it can test the anchor's resource_pk (see where)."""
    return isinstance(c, Chain) or (isinstance(c, Filter) and not c.param.on_resource_table)


def where(
    query: SearchQuery,
    planner: Planner,
    compartment: tuple[str, str] | None,
    restrict: ColumnElement[bool] | None,
) -> list[ColumnElement[bool]]:
    """The conditions on `resource` rows, the index tests nested in the first one's SELECT."""
    # The first criterion, when it can select rows from an index, is the anchor: `pk IN (SELECT
    # resource_pk FROM idx_... WHERE ...)`, and the other index tests are nested in that SELECT, on
    # its resource_pk. So the matches are found in the index tables alone and only they are read
    # from `resource`; otherwise every row of the anchor was read before the others could test it.
    conds: list[ColumnElement[bool]] = [_R.c.deleted == false()]
    criteria = sorted(query.criteria, key=_anchor_order)  # stable: drivers first
    if query.types:
        # With an index-backed test to drive the search, SQLite must not start from ix_resource_type_updated.
        column = _Unindexed(_R.c.res_type) if criteria and _drives(criteria[0]) else _R.c.res_type
        conds.append(of_params(column, query.types))
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
