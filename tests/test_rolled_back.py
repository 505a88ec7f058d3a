"""Tests marked `rolled_back` run in one transaction that is rolled back (tests/rolled_back.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from fhir_server.errors import Invalid
from tests import factories
from tests.rolled_back import rolled_back_store


def _versions(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM resource_version")).scalar_one())


def test_writes_are_seen_inside_the_test_and_gone_after_it(engine: Engine) -> None:
    before = _versions(engine)
    with rolled_back_store(engine, base="http://testserver") as store:
        with store.write() as tx:
            created = tx.create(factories.patient("Rolled"))
        with store.read() as tx:
            found = tx.current("Patient", created.res_id)
        assert found is not None and found.version == 1
        assert _versions(engine) == before  # another connection never sees the outer transaction's rows
    assert _versions(engine) == before


def test_a_failed_unit_of_work_rolls_back_only_its_own_savepoint(engine: Engine) -> None:
    with rolled_back_store(engine, base="http://testserver") as store:
        with store.write() as tx:
            kept = tx.create(factories.patient("Kept"))
        with pytest.raises(Invalid), store.write() as tx:
            lost = tx.create(factories.patient("Lost"))
            assert tx.current("Patient", lost.res_id) is not None  # flushed: written in the savepoint
            raise Invalid("stop", "Patient")
        with store.read() as tx:
            assert tx.current("Patient", kept.res_id) is not None
            assert tx.current("Patient", lost.res_id) is None
