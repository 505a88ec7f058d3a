"""The Prefer header as an RFC 7240 list (https://www.rfc-editor.org/rfc/rfc7240#section-2)."""

from __future__ import annotations

from fhir_server.api import prefer


def test_one_header_with_several_preferences() -> None:
    prefs = prefer.parse(["respond-async, handling=lenient"])
    assert prefs == {"respond-async": "", "handling": "lenient"}
    assert prefer.respond_async(prefs) and prefer.lenient(prefs)


def test_several_headers_are_one_list_and_the_first_occurrence_wins() -> None:
    prefs = prefer.parse(["handling=lenient", "respond-async", "handling=strict"])
    assert prefer.lenient(prefs) and prefer.respond_async(prefs)


def test_names_are_case_insensitive_values_may_be_quoted_and_parameters_are_ignored() -> None:
    prefs = prefer.parse(['Respond-Async; wait=10, HANDLING="lenient"; foo="a,b"'])
    assert prefer.respond_async(prefs) and prefer.lenient(prefs)
    assert prefer.parse(['return="a,\\"b"']) == {"return": 'a,"b'}


def test_no_header_and_other_preferences() -> None:
    assert prefer.parse([]) == {}
    prefs = prefer.parse(["return=minimal, handling=strict"])
    assert not prefer.respond_async(prefs) and not prefer.lenient(prefs)
