"""Who may poll the status resource of an asynchronous request, whatever their scopes (https://hl7.org/fhir/R4/async.html).

A job's status resource (the Task of an `$ingest`) is readable by whoever requested the job. Which
resource is whose job's status is the jobs' knowledge: they register the test at start-up
(`fhir_server.job_kinds`), and policy (`enforce.check_read`) only decides on its answer.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from .principal import Principal

RequestedBy = Callable[[Connection, Principal, str, str], bool]
_tests: list[RequestedBy] = []


def register(test: RequestedBy) -> None:
    """Add a test `(conn, principal, res_type, res_id) -> True when the caller requested it`."""
    if test not in _tests:
        _tests.append(test)


def requested_by(conn: Connection, principal: Principal, res_type: str, res_id: str) -> bool:
    """The resource is the status of an asynchronous request this caller made."""
    return any(test(conn, principal, res_type, res_id) for test in _tests)
