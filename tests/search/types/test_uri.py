"""URI index values (https://hl7.org/fhir/R4/search.html#uri)."""

from __future__ import annotations

from fhir_server.search.types import RowSink, uri


def test_uri_is_kept_as_is() -> None:
    sink: RowSink = {"uri": []}
    uri.values(["http://example.org/fhir/ValueSet/x|2"], "canonical", 3, 0, sink)
    assert sink["uri"] == [(3, 0, "http://example.org/fhir/ValueSet/x|2")]


def test_uri_is_cut_to_512_and_empty_is_skipped() -> None:
    sink: RowSink = {"uri": []}
    uri.values(["u" * 600, ""], "uri", 3, 0, sink)
    assert [len(r[2]) for r in sink["uri"]] == [512]
