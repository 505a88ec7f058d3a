"""$import lines are validated against the StructureDefinitions like every other write (issue 11):
a line with a code outside a required binding or a broken invariant is a line error naming the
element, the valid lines of the same chunk are kept. Fails on 77b7c15 (the lines were accepted)."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_server.jobs import import_
from fhir_server.jobs.import_ import LineError, prepare
from fhir_server.store.sql import Store
from tests import factories
from tests.interactions.test_stored_profiles import HEARTRATE, MINE, heart_rate, my_profile


def test_invalid_lines_are_line_errors_with_their_expression() -> None:
    good = orjson.dumps({**factories.patient(), "id": "a"})
    bad_code = orjson.dumps({**factories.patient(gender="x"), "id": "b"})
    obs_6 = orjson.dumps({**factories.observation("a", dataAbsentReason={"text": "lost"}), "id": "c"})
    results = prepare([("f.ndjson", 1, good), ("f.ndjson", 2, bad_code), ("f.ndjson", 3, obs_6)])
    assert not isinstance(results[0], LineError)
    assert isinstance(results[1], LineError) and results[1].expression == ("Patient.gender",)
    assert isinstance(results[2], LineError) and results[2].expression == ("Observation",)
    assert "obs-6" in results[2].message


def test_a_line_claiming_a_profile_stored_on_the_server_is_checked_against_it(
    store: Store, tmp_path: Path
) -> None:
    """$import binds stored profiles like every other write (fails on eed06f0: the claim was ignored)."""
    with store.write() as tx:
        tx.create(factories.patient("Alpha", "Ann"), "p1")
        tx.create(my_profile(fixed_code="/min"), "my-heartrate")
    source = tmp_path / "obs.ndjson"
    source.write_bytes(
        b"".join(
            orjson.dumps(item) + b"\n"
            for item in (
                {**heart_rate("/min"), "id": "meets"},
                {**heart_rate("beats/min"), "id": "breaks"},
                {**heart_rate("/min", HEARTRATE), "id": "package"},
            )
        )
    )
    errors: list[LineError] = []
    tally = import_.load(store, source, on_error=errors.append)
    assert (tally.created, tally.failed) == (2, 1)
    assert [e.line for e in errors] == [2]
    assert MINE in errors[0].message
    with store.read() as tx:
        assert tx.current("Observation", "meets") is not None
        assert tx.current("Observation", "breaks") is None
