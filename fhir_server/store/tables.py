"""Relational schema of the store: current resources, their versions, and the search index.

Design: ../shared/docs/ARCHITECTURE.md section 3. Surrogate bigint keys inside, FHIR ids outside.
Times are integer microseconds since the Unix epoch (UTC), so they sort and compare the same on
SQLite and PostgreSQL. Index tables hold rows for CURRENT versions only and are written in the same
database transaction as the resource (https://hl7.org/fhir/R4/search.html).
"""

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)

metadata = MetaData()

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so autoincrement works) on SQLite.
PK = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The JSON exactly as served (meta.versionId / meta.lastUpdated already inside); empty when deleted.
    Column("content", LargeBinary, nullable=False),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    Index("ix_resource_updated", "last_updated"),
)

# Every version of every resource, for vread and _history. `txn` orders system history.
resource_version = Table(
    "resource_version",
    metadata,
    Column("txn", PK, primary_key=True, autoincrement=True),
    Column("resource_pk", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH, DELETE
    Column("content", LargeBinary, nullable=False),
    # The row is also the change event of the version (store/outbox.py): where the write came from
    # and who made it, and on PostgreSQL the id of the writing transaction (set by the database,
    # POSTGRES_DEFAULTS), which orders events by commit safely; NULL on SQLite (txn order suffices).
    Column("context", BigInteger, nullable=False),  # write_context.id
    Column("xid", BigInteger, nullable=True),
    UniqueConstraint("resource_pk", "version", name="uq_version_resource_version"),
    Index("ix_version_type_updated", "res_type", "last_updated"),
    Index("ix_version_updated", "last_updated"),
    # The change events (store/outbox.py): a quiet version's xid is NULL on PostgreSQL, -1 on SQLite.
    Index(
        "ix_version_xid",
        "xid",
        "txn",
        postgresql_where=text("xid IS NOT NULL"),
        sqlite_where=text("xid IS NULL"),
    ),
)

# Where a write came from and who made it: one row per distinct context, shared by every version
# written in it (store/outbox.py interns them), so a version carries one integer, not the strings.
write_context = Table(
    "write_context",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),  # rest, transaction:<id>, import:<job id>, ...
    Column("client_id", String(255), nullable=True),
    Column("subject", String(255), nullable=True),
    Column("fhir_user", String(128), nullable=True),
    Column("patient", String(64), nullable=True),
)

# How far each change-event consumer (fhir_server/events) has got: the (xid, txn) of the last
# event it was given (xid 0 on SQLite).
change_consumer = Table(
    "change_consumer",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("xid", BigInteger, nullable=False),
    Column("txn", BigInteger, nullable=False),
)

# ---- search index (current versions only) ----
# param_id: a stable 31-bit integer naming (resource type, parameter code); see search/parameters.py.
# grp: the index of the repeating element a row came from, so composite parameters can correlate
# the parts that come from the same element (e.g. one Observation.component); 0 when irrelevant.

idx_string = Table(
    "idx_string",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("norm", String(255), nullable=False),  # lower-case, accents stripped, whitespace folded
    Column("exact", String(255), nullable=False),
    Index("ix_idx_string_norm", "param_id", "norm", "resource_pk"),
    Index("ix_idx_string_res", "resource_pk"),
)

idx_token = Table(
    "idx_token",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("system", String(255), nullable=True),  # None: no system; "" never stored
    Column("code", String(255), nullable=True),
    Column("display", String(255), nullable=True),  # lower-cased text/display for :text
    Index("ix_idx_token_code", "param_id", "code", "system", "resource_pk"),
    Index("ix_idx_token_res", "resource_pk"),
)

idx_reference = Table(
    "idx_reference",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("target_type", String(64), nullable=True),  # local references: type and id
    Column("target_id", String(64), nullable=True),
    Column("url", String(512), nullable=True),  # absolute or canonical references
    # url last: the test that a reference is local (url NULL or under the base) needs no table row.
    Index("ix_idx_reference_target", "param_id", "target_id", "target_type", "resource_pk", "url"),
    Index("ix_idx_reference_rev", "target_type", "target_id"),
    Index("ix_idx_reference_res", "resource_pk"),
)

idx_date = Table(
    "idx_date",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("low", BigInteger, nullable=False),  # inclusive, microseconds since epoch
    Column("high", BigInteger, nullable=False),  # inclusive, microseconds since epoch
    Index("ix_idx_date_low", "param_id", "low", "resource_pk"),
    Index("ix_idx_date_high", "param_id", "high", "resource_pk"),
    Index("ix_idx_date_res", "resource_pk"),
)

idx_quantity = Table(
    "idx_quantity",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("value", Float, nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(64), nullable=True),
    Column("unit", String(64), nullable=True),
    Column("canon_value", Float, nullable=True),  # value in UCUM canonical units, when convertible
    Column("canon_code", String(64), nullable=True),
    Index("ix_idx_quantity_value", "param_id", "value", "resource_pk"),
    Index("ix_idx_quantity_canon", "param_id", "canon_code", "canon_value"),
    Index("ix_idx_quantity_res", "resource_pk"),
)

idx_number = Table(
    "idx_number",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("value", Float, nullable=False),
    Index("ix_idx_number_value", "param_id", "value", "resource_pk"),
    Index("ix_idx_number_res", "resource_pk"),
)

idx_uri = Table(
    "idx_uri",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("grp", Integer, nullable=False, default=0),
    Column("uri", String(512), nullable=False),
    Index("ix_idx_uri_uri", "param_id", "uri", "resource_pk"),
    Index("ix_idx_uri_res", "resource_pk"),
)

# Full text (`_text`, `_content`; search/full_text.py): one row per resource and parameter, `body` the
# folded words joined by spaces. `id` is only there for SQLite's FTS5 index (rowid; an implicit rowid
# may change on VACUUM): index rows leave it out (search/index.py COLUMNS, store/fast.py). The text
# index itself is DDL Alembic does not see (POSTGRES_FULL_TEXT, SQLITE_FULL_TEXT below).
idx_text = Table(
    "idx_text",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("resource_pk", BigInteger, nullable=False),
    Column("param_id", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_idx_text_res", "resource_pk"),
)

# The quantity values of Observations as $stats reads them (search/observation_values.py): one row per
# value and code it is looked up by, derived from the Observation's other index rows. The index is
# shaped for one subject's values of one code over time (an index range scan). It does not cover the
# row: with INCLUDE it was 1.7 times the size of the table (191 vs 114 MB for 650k rows), and reading
# it cost more than the heap pages it saved (bench/README.md).
idx_observation_value = Table(
    "idx_observation_value",
    metadata,
    Column("resource_pk", BigInteger, nullable=False),
    Column("subject", String(512), nullable=False),  # "Type/id", or the absolute URL
    Column("system", String(255), nullable=True),  # the coding the value is found by
    Column("code", String(255), nullable=False),
    Column("grp", Integer, nullable=False),  # 0: Observation.value; n: the n-th component
    Column("value_system", String(255), nullable=True),  # the coding the value is reported under
    Column("value_code", String(255), nullable=False),
    Column("effective", BigInteger, nullable=True),  # start of Observation.effective, µs
    Column("value", Float, nullable=False),
    Column("unit", String(64), nullable=True),  # the quantity's code, else its unit
    Column("canon_value", Float, nullable=True),
    Column("canon_code", String(64), nullable=True),
    Index("ix_idx_observation_value_find", "subject", "code", "grp", "effective"),
    Index("ix_idx_observation_value_res", "resource_pk"),
)

INDEX_TABLES = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "quantity": idx_quantity,
    "number": idx_number,
    "uri": idx_uri,
    "text": idx_text,
    "observation_value": idx_observation_value,
}

# Extended statistics (PostgreSQL only; https://www.postgresql.org/docs/15/planner-stats.html#PLANNER-STATS-EXTENDED).
# A token's code and system depend on its param_id; multiplying their selectivities as if independent,
# the planner put `Observation?category=vital-signs` (70% of the Observations) at 0.6% and chose a hash
# of every match over an index-ordered scan that stops after one page (bench/bench_search.py).
# Alembic does not see these: the migration must run them (op.execute), as create_all does.
POSTGRES_STATISTICS = {
    "idx_token": "CREATE STATISTICS IF NOT EXISTS st_idx_token_code (mcv, dependencies) "
    "ON param_id, code, system FROM idx_token",
}
# Distinct values the planner is told rather than left to estimate (PostgreSQL only; ALTER TABLE ...
# SET n_distinct, https://www.postgresql.org/docs/15/sql-altertable.html). A token's codes are a few
# very common values (status, category, LOINC codes, in the MCV list) and a long tail of identifiers
# each on one row: from its sample, ANALYZE put 1,001,018 distinct codes of 5.2 million rows at
# 6,941, so every identifier seemed to match 93 rows, and the batched `ifNoneExist` lookup of 1,000
# codes (search/token_batch.py) became a parallel hash join over every resource: 0.8 s per 1,000
# records, 3,200 records/s for a resend of a million Apple Health records. -0.2 (a fifth of the rows)
# is what the tail is worth: about one row per code beyond the MCV list.
POSTGRES_COLUMN_STATISTICS = {
    "idx_token": "ALTER TABLE idx_token ALTER COLUMN code SET (n_distinct = -0.2)",
}
# Column defaults only PostgreSQL has: the id of the transaction writing a version (store/outbox.py).
POSTGRES_DEFAULTS = {
    "resource_version": "ALTER TABLE resource_version ALTER COLUMN xid "
    "SET DEFAULT (pg_current_xact_id()::text::bigint)",
}
# The full-text index of idx_text.body: a GIN index of its tsvector (PostgreSQL), or an FTS5 table kept
# by triggers (SQLite,
# external content: the text is stored once, in idx_text). https://www.postgresql.org/docs/15/textsearch-tables.html,
# https://www.sqlite.org/fts5.html#external_content_tables
# The tsvector is a stored generated column (fts_vector): computed once per row, and read, not
# recomputed, where the index cannot answer alone (phrases, a probe by resource_pk).
POSTGRES_FULL_TEXT = {
    "fts_vector": "ALTER TABLE idx_text ADD COLUMN IF NOT EXISTS fts_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, body)) STORED",
    "ix_idx_text_fts": "CREATE INDEX IF NOT EXISTS ix_idx_text_fts ON idx_text USING gin (fts_vector)",
}
SQLITE_FULL_TEXT = {
    "idx_text_fts": "CREATE VIRTUAL TABLE IF NOT EXISTS idx_text_fts USING fts5(body, "
    "content='idx_text', content_rowid='id', tokenize='ascii')",
    "idx_text_fts_insert": "CREATE TRIGGER IF NOT EXISTS idx_text_fts_insert AFTER INSERT ON idx_text BEGIN "
    "INSERT INTO idx_text_fts(rowid, body) VALUES (new.id, new.body); END",
    "idx_text_fts_delete": "CREATE TRIGGER IF NOT EXISTS idx_text_fts_delete AFTER DELETE ON idx_text BEGIN "
    "INSERT INTO idx_text_fts(idx_text_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
}
FULL_TEXT_NAMES = frozenset((*POSTGRES_FULL_TEXT, *SQLITE_FULL_TEXT))
"""Schema objects outside the metadata (migrations compare without them: store/migrations/env.py)."""
for _ddl in POSTGRES_FULL_TEXT.values():
    event.listen(idx_text, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))
for _ddl in SQLITE_FULL_TEXT.values():
    event.listen(idx_text, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
event.listen(idx_text, "before_drop", DDL("DROP TABLE IF EXISTS idx_text_fts").execute_if(dialect="sqlite"))

for _ddls in (POSTGRES_STATISTICS, POSTGRES_COLUMN_STATISTICS, POSTGRES_DEFAULTS):
    for _name, _ddl in _ddls.items():
        event.listen(metadata.tables[_name], "after_create", DDL(_ddl).execute_if(dialect="postgresql"))
