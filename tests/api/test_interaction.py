"""The interaction labels of metrics and logs: right for each FHIR URL shape, bounded for any path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.api.interaction import classify
from fhir_server.model import resource_types

NAMES = {
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "history-system",
    "create", "search-type", "search-system", "search-compartment", "transaction", "operation",
    "capabilities", "discovery", "auth", "admin", "bulk-status", "health", "metrics", "openapi", "other",
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/Patient/1", ("read", "Patient")),
        ("HEAD", "/Patient/1", ("read", "Patient")),
        ("GET", "/Patient/1/_history/2", ("vread", "Patient")),
        ("GET", "/Patient/1/_history", ("history-instance", "Patient")),
        ("GET", "/Patient/_history", ("history-type", "Patient")),
        ("GET", "/_history", ("history-system", "")),
        ("PUT", "/Patient/1", ("update", "Patient")),
        ("PUT", "/Patient", ("update", "Patient")),  # conditional update
        ("PATCH", "/Patient/1", ("patch", "Patient")),
        ("DELETE", "/Patient/1", ("delete", "Patient")),
        ("POST", "/Patient", ("create", "Patient")),
        ("GET", "/Patient", ("search-type", "Patient")),
        ("POST", "/Patient/_search", ("search-type", "Patient")),
        ("GET", "/Patient/1/Observation", ("search-compartment", "Patient")),
        ("GET", "/", ("search-system", "")),
        ("POST", "/", ("transaction", "")),
        ("GET", "/Patient/$export", ("operation", "Patient")),
        ("POST", "/Patient/1/$ingest", ("operation", "Patient")),
        ("GET", "/$export", ("operation", "")),
        ("GET", "/metadata", ("capabilities", "")),
        ("GET", "/.well-known/smart-configuration", ("discovery", "")),
        ("POST", "/auth/token", ("auth", "")),
        ("GET", "/_jobs/abc", ("bulk-status", "")),
        ("GET", "/readyz", ("health", "")),
        ("GET", "/NotAType/1", ("other", "")),
    ],
)
def test_each_url_shape(method: str, path: str, expected: tuple[str, str]) -> None:
    assert tuple(classify(method, path)) == expected


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "BREW"]),
    path=st.text(max_size=60),
)
def test_any_path_gets_a_label_from_the_bounded_sets(method: str, path: str) -> None:
    name, res_type = classify(method, "/" + path)
    assert name in NAMES
    assert res_type == "" or res_type in resource_types()
