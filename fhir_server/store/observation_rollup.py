"""Partial aggregates of Observation values per 15-minute UTC slot, kept by the database on every write of
idx_observation_value (https://hl7.org/fhir/R4/observation-operation-stats.html; docs/clinical-operations.md).

One row per (subject, code found by, system, slot, grp, value coding, unit, canonical unit): count, sum,
minimum and maximum of the values as given and in UCUM canonical units. A slot is 15 minutes of UTC
(`(effective + SHIFT) // SLOT`); every bucket of the `$stats` series (local hours, days, ISO weeks,
months of a zone whose offsets and changes are whole quarter hours: +5:30, +5:45 and DST included)
is a union of whole slots, so the series sums slots instead of values. Values without an instant
(`effective` NULL) have no slot.

Kept exact under creates, updates, deletes, reindexing, `$import` and expiry alike, by triggers on
idx_observation_value (so every path that writes index rows keeps it, COPY included). A minimum
cannot be subtracted: a slot whose minimum or maximum may have left is recomputed from the value
rows themselves. PostgreSQL: statement triggers with transition tables; the slot's row is inserted if missing, locked
(FOR UPDATE, in key order) and only then recomputed, in a later statement whose snapshot sees every
committed value, so two writers of one slot serialise instead of losing one's values. A slot emptied
keeps its row with count 0 (deleting it would let a waiting writer miss it); readers skip those.
SQLite: one writer at a time, row triggers; a row inserted is added to its slot's measures rather
than the slot recomputed (a recompute per row made a slot's inserts quadratic); a row deleted is
subtracted from the count and the sum, and recomputes its slot only when it held the slot's minimum
or maximum and no value left in the slot ties with it.
"""

from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, Float, Integer, PrimaryKeyConstraint, String, Table, event

from .tables import metadata

SECOND = 1_000_000
SLOT = 15 * 60 * SECOND  # µs
# Added before integer division so it never sees a negative number: a whole number of weeks (as
# search/observation_stats.SHIFT), so a slot starts on a quarter hour of UTC.
SHIFT = 1_000_000 * 7 * 24 * 3600 * SECOND

KEYS = ("subject", "code", "system", "slot", "grp", "value_system", "value_code", "unit", "canon_code")
MEASURES = (
    "count",
    "sum",
    "minimum",
    "maximum",
    "canon_count",
    "canon_sum",
    "canon_minimum",
    "canon_maximum",
)

observation_value_rollup = Table(
    "observation_value_rollup",
    metadata,
    Column("subject", String(512), nullable=False),
    Column("code", String(255), nullable=False),  # the code the values are found by
    Column("system", String(255), nullable=False),  # '' for none (keys cannot be NULL)
    Column("slot", BigInteger, nullable=False),  # (effective + SHIFT) // SLOT
    Column("grp", Integer, nullable=False),
    Column("value_system", String(255), nullable=False),  # '' for none
    Column("value_code", String(255), nullable=False),
    Column("unit", String(64), nullable=False),  # '' for none
    Column("canon_code", String(64), nullable=False),  # '' for none
    Column("count", BigInteger, nullable=False),
    Column("sum", Float, nullable=False),
    Column("minimum", Float, nullable=True),
    Column("maximum", Float, nullable=True),
    Column("canon_count", BigInteger, nullable=False),
    Column("canon_sum", Float, nullable=False),
    Column("canon_minimum", Float, nullable=True),
    Column("canon_maximum", Float, nullable=True),
    PrimaryKeyConstraint(*KEYS, name="pk_observation_value_rollup"),
)

_SLOT_OF = f"(({{t}}.effective + {SHIFT}) / {SLOT})"
_KEY_OF = (
    "{t}.subject, {t}.code, coalesce({t}.system, ''), " + _SLOT_OF + ", {t}.grp, "
    "coalesce({t}.value_system, ''), {t}.value_code, coalesce({t}.unit, ''), coalesce({t}.canon_code, '')"
)
_AGGREGATES = (
    "count(v.value), coalesce(sum(v.value), 0), min(v.value), max(v.value), "
    "count(v.canon_value), coalesce(sum(v.canon_value), 0), min(v.canon_value), max(v.canon_value)"
)
_KEY_LIST = ", ".join(KEYS)
_ZEROS = "0, 0, NULL, NULL, 0, 0, NULL, NULL"
_MEASURE_LIST = ", ".join(MEASURES)


def _slot_rows(k: str, slot: str) -> str:
    """The value rows (alias v) of the slot whose key columns are `k`.<key> and `slot`: an index range
    scan of ix_idx_observation_value_find (subject, code, grp, effective)."""
    return (
        f"v.subject = {k}.subject AND v.code = {k}.code AND v.grp = {k}.grp"
        f" AND v.effective >= {slot} * {SLOT} - {SHIFT} AND v.effective < ({slot} + 1) * {SLOT} - {SHIFT}"
        f" AND coalesce(v.system, '') = {k}.system AND coalesce(v.value_system, '') = {k}.value_system"
        f" AND v.value_code = {k}.value_code AND coalesce(v.unit, '') = {k}.unit"
        f" AND coalesce(v.canon_code, '') = {k}.canon_code"
    )


_TOUCHED = f"SELECT DISTINCT {_KEY_OF.format(t='c')} FROM changed c WHERE c.effective IS NOT NULL"
POSTGRES_ROLLUP = {
    "observation_rollup_refresh": (
        "CREATE OR REPLACE FUNCTION observation_rollup_refresh() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        f"  INSERT INTO observation_value_rollup ({_KEY_LIST}, {_MEASURE_LIST})\n"
        f"  SELECT k.*, {_ZEROS} FROM ({_TOUCHED}) AS k ({_KEY_LIST})\n"
        f"  ORDER BY {_KEY_LIST} ON CONFLICT DO NOTHING;\n"
        f"  PERFORM 1 FROM observation_value_rollup r WHERE ({_KEY_LIST}) IN ({_TOUCHED})\n"
        f"  ORDER BY {_KEY_LIST} FOR UPDATE;\n"
        f"  UPDATE observation_value_rollup r SET ({_MEASURE_LIST}) = ({', '.join('s.m_' + m for m in MEASURES)})\n"
        f"  FROM (SELECT k.*, a.* FROM ({_TOUCHED}) AS k ({_KEY_LIST}),\n"
        f"      LATERAL (SELECT {_AGGREGATES} FROM idx_observation_value v WHERE {_slot_rows('k', 'k.slot')})\n"
        f"        AS a ({', '.join('m_' + m for m in MEASURES)})) AS s\n"
        "  WHERE " + " AND ".join(f"r.{k} = s.{k}" for k in KEYS) + ";\n"
        "  RETURN NULL;\n"
        "END $$"
    ),
    "observation_rollup_insert": (
        "CREATE OR REPLACE TRIGGER observation_rollup_insert AFTER INSERT ON idx_observation_value "
        "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION observation_rollup_refresh()"
    ),
    "observation_rollup_delete": (
        "CREATE OR REPLACE TRIGGER observation_rollup_delete AFTER DELETE ON idx_observation_value "
        "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION observation_rollup_refresh()"
    ),
}


_ROLLUP = "observation_value_rollup"


def _sqlite_key(row: str) -> str:
    """The rollup row of the slot of value row `row` (new, old)."""
    return (
        f"subject = {row}.subject AND code = {row}.code AND system = coalesce({row}.system, '')"
        f" AND slot = {_SLOT_OF.format(t=row)} AND grp = {row}.grp"
        f" AND value_system = coalesce({row}.value_system, '') AND value_code = {row}.value_code"
        f" AND unit = coalesce({row}.unit, '') AND canon_code = coalesce({row}.canon_code, '')"
    )


def _sqlite_ensure(row: str) -> str:
    return (
        f"INSERT OR IGNORE INTO observation_value_rollup ({_KEY_LIST}, {_MEASURE_LIST}) "
        f"VALUES ({_KEY_OF.format(t=row)}, {_ZEROS}); "
    )


def _added(measure: str, value: str) -> str:
    """`measure`'s new value once `value` (new.value, new.canon_value; NULL: no value) is added."""
    kind = measure.removeprefix("canon_")
    if kind == "count":
        return f"{measure} + ({value} IS NOT NULL)"
    if kind == "sum":
        return f"{measure} + coalesce({value}, 0)"
    beyond = "<" if kind == "minimum" else ">"
    return (
        f"CASE WHEN {value} IS NULL THEN {measure} WHEN {measure} IS NULL OR {value} {beyond} {measure}"
        f" THEN {value} ELSE {measure} END"
    )


def _sqlite_insert_trigger() -> str:
    """A value row added: its slot's measures are adjusted by its value (exact for the count, the
    minimum and the maximum; the sum adds in a different order than a recompute would, which moves
    only its last bits). A recompute per row made a slot's inserts quadratic: 775 of the 1,270 ms of a
    500-Observation transaction into slots already holding 2,000 values."""
    sets = ", ".join(
        f"{m} = {_added(m, 'new.canon_value' if m.startswith('canon_') else 'new.value')}" for m in MEASURES
    )
    return (
        "CREATE TRIGGER IF NOT EXISTS observation_rollup_insert AFTER INSERT "
        "ON idx_observation_value WHEN new.effective IS NOT NULL BEGIN "
        + _sqlite_ensure("new")
        + f"UPDATE observation_value_rollup SET {sets} WHERE {_sqlite_key('new')}; END"
    )


def _lost(value: str, prefix: str) -> str:
    """Whether deleting `value` (old.value, old.canon_value) may change its slot's minimum or maximum
    (`prefix`: its measures'): it lay at one of them (or outside, or they are unknown) and no value
    left in the slot ties with it. A tie keeps the extreme: without the look for one, deleting a slot
    of equal values recomputed the slot at every row (every value is both extremes)."""
    column = "v.canon_value" if prefix else "v.value"
    tie = (
        f"EXISTS (SELECT 1 FROM idx_observation_value v WHERE {_slot_rows(_ROLLUP, f'{_ROLLUP}.slot')}"
        f" AND {column} = {value})"
    )
    low, high = f"{prefix}minimum", f"{prefix}maximum"
    return (
        f"({value} IS NOT NULL AND ({low} IS NULL OR {high} IS NULL OR {value} < {low} OR {value} > {high}"
        f" OR (({value} = {low} OR {value} = {high}) AND NOT {tie})))"
    )


def _sqlite_delete_trigger() -> str:
    """A value row removed: its value is subtracted from its slot's count and sum, unless it may have
    been the slot's last minimum or maximum (`_lost`): then the slot is recomputed from the value rows
    left (a minimum cannot be subtracted). A recompute per row made deleting a slot's values
    quadratic; now a slot recomputes only when an extreme leaves it with no value tied to it."""
    values = (("old.value", ""), ("old.canon_value", "canon_"))  # each with its measures' prefix
    # Never NULL: a slot without values counted (its row just made by the ensure, say) is recomputed.
    recompute = "(count = 0 AND canon_count = 0) OR " + " OR ".join(_lost(v, p) for v, p in values)
    sets = ", ".join(
        f"{p}count = {p}count - ({v} IS NOT NULL), {p}sum = {p}sum - coalesce({v}, 0)" for v, p in values
    )
    # The recompute first: after it, the value that left lies outside the new minimum and maximum (or
    # they are NULL), so the subtraction's test is decided before its look for a tie, which would scan
    # the slot again (the other order looked for a tie twice when there was none).
    return (
        "CREATE TRIGGER IF NOT EXISTS observation_rollup_delete AFTER DELETE "
        "ON idx_observation_value WHEN old.effective IS NOT NULL BEGIN "
        + _sqlite_ensure("old")
        + f"UPDATE observation_value_rollup SET ({_MEASURE_LIST}) = "
        f"(SELECT {_AGGREGATES} FROM idx_observation_value v "
        f"WHERE {_slot_rows(_ROLLUP, f'{_ROLLUP}.slot')}) WHERE {_sqlite_key('old')} AND ({recompute}); "
        f"UPDATE observation_value_rollup SET {sets} WHERE {_sqlite_key('old')} AND NOT ({recompute}); END"
    )


SQLITE_ROLLUP = {
    "observation_rollup_insert": _sqlite_insert_trigger(),
    "observation_rollup_delete": _sqlite_delete_trigger(),
}
POSTGRES_DROP = "DROP FUNCTION IF EXISTS observation_rollup_refresh() CASCADE"

# Every slot from the value rows at once, and the table rebuilt from it in two statements (after a
# bulk load that bypassed the triggers: bench/bench_clinical.py).
GROUPED = (
    f"SELECT {_KEY_OF.format(t='v')}, {_AGGREGATES} FROM idx_observation_value v "
    "WHERE v.effective IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
)
REBUILD = (
    "DELETE FROM observation_value_rollup",
    f"INSERT INTO observation_value_rollup ({_KEY_LIST}, {_MEASURE_LIST}) {GROUPED}",
)

for _ddl in POSTGRES_ROLLUP.values():
    event.listen(metadata, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))
for _ddl in SQLITE_ROLLUP.values():
    event.listen(metadata, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
event.listen(metadata, "after_drop", DDL(POSTGRES_DROP).execute_if(dialect="postgresql"))
