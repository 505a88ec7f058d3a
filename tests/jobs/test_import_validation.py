"""$import lines are validated against the StructureDefinitions like every other write (issue 11):
a line with a code outside a required binding or a broken invariant is a line error naming the
element, the valid lines of the same chunk are kept. Fails on 77b7c15 (the lines were accepted)."""

from __future__ import annotations

import orjson

from fhir_server.jobs.import_ import LineError, prepare
from tests import factories


def test_invalid_lines_are_line_errors_with_their_expression() -> None:
    good = orjson.dumps({**factories.patient(), "id": "a"})
    bad_code = orjson.dumps({**factories.patient(gender="x"), "id": "b"})
    obs_6 = orjson.dumps({**factories.observation("a", dataAbsentReason={"text": "lost"}), "id": "c"})
    results = prepare([("f.ndjson", 1, good), ("f.ndjson", 2, bad_code), ("f.ndjson", 3, obs_6)])
    assert not isinstance(results[0], LineError)
    assert isinstance(results[1], LineError) and results[1].expression == ("Patient.gender",)
    assert isinstance(results[2], LineError) and results[2].expression == ("Observation",)
    assert "obs-6" in results[2].message
