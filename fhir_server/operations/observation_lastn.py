"""Observation/$lastn: the most recent N Observations per code (https://hl7.org/fhir/R4/observation-operation-lastn.html).

`[base]/Observation/$lastn?patient=...&category=...[&code=...][&date=...][&max=N]`, GET or POST. The
search parameters are Observation's own (parsed and planned as a search, 400 naming a bad one); a
`patient` or `subject` is required. The answer is a searchset Bundle of at most `max` (default 1)
Observations per subject and code, newest first (Observation.effective, then the latest written),
grouped by code; an Observation with several codings is given once. One statement with a window
function (search/observation_stats.lastn) on both databases. Access: read and search on Observation;
the caller's grants are AND-ed into the search, so a patient's token sees its own Observations only.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..auth import enforce
from ..errors import Invalid
from ..interactions import search
from ..interactions.context import Context
from ..search import observation_stats, plan
from ..search.bundle import bundle, link, page_url
from ..store.sql import Tx
from .parameters import OperationInput

_MATCH = {"mode": "match"}
MAX_PER_CODE = 1000
RESULT_ONLY = frozenset({"max", "_count", "_sort", "_cursor", "_total", "_include", "_revinclude"})


def search_pairs(params: OperationInput, skip: frozenset[str]) -> list[tuple[str, str]]:
    """The search parameters among the inputs (strings only; others are 400)."""
    pairs: list[tuple[str, str]] = []
    for name, values in params.values.items():
        if name in skip:
            continue
        for value in values:
            if not isinstance(value, str):
                raise Invalid(f"Parameter '{name}' must be a search parameter value", expression=name)
            pairs.append((name, value))
    return pairs


def lastn(ctx: Context, tx: Tx, params: OperationInput) -> dict[str, Any]:
    """The searchset Bundle of the latest `max` Observations per code."""
    enforce.check_operation(ctx.principal, "Observation", "rs")
    most = params.integer("max", 1)
    most = 1 if most is None else most
    if most > MAX_PER_CODE:
        raise Invalid(f"Parameter 'max' is at most {MAX_PER_CODE}", expression="max")
    pairs = search_pairs(params, RESULT_ONLY)
    subjects = [(name, value) for name, value in pairs if name.split(":")[0] in ("patient", "subject")]
    if not subjects:
        raise Invalid("$lastn needs a 'patient' or 'subject'", expression="patient")
    # One typed reference, without modifier or list: every match has that one subject (a bare id
    # given to `subject` may name a Patient and a Group alike; `patient` is typed).
    (name, value), more = subjects[0], subjects[1:]
    one_subject = not more and name in ("patient", "subject") and "," not in value
    one_subject = one_subject and (name == "patient" or "/" in value)
    q = search.parse(ctx, "Observation", pairs, lenient=False)
    base = ctx.settings.base
    restrict = enforce.search_restriction(ctx.principal, q, base)
    matching = [plan.condition(q, base_url=base)]
    if restrict is not None:
        matching.append(restrict)
    seen: set[int] = set()
    entries: list[dict[str, Any]] = []
    for row in tx.run_search(observation_stats.lastn(matching, most, one_subject)):
        if int(row.pk) not in seen:
            seen.add(int(row.pk))
            rtype, rid = search.type_and_id(row.content)
            entries.append(
                {
                    "fullUrl": f"{base}/{rtype}/{rid}",
                    "resource": orjson.Fragment(row.content),
                    "search": _MATCH,
                }
            )
    used = [(k, v) for k, v in pairs] + ([("max", str(most))] if params.one("max") is not None else [])
    return bundle(
        "searchset", entries, [link("self", page_url(base, "Observation/$lastn", used))], len(entries)
    )
