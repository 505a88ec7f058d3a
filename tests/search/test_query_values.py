"""Value parsers of search (https://hl7.org/fhir/R4/search.html): escaping, prefixes, each type."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid
from fhir_server.search.types.composite import parse_composite
from fhir_server.search.types.date import parse_date, search_range
from fhir_server.search.types.number import parse_number
from fhir_server.search.types.quantity import parse_quantity
from fhir_server.search.types.reference import ReferenceValue, parse_reference
from fhir_server.search.types.string import normalize, parse_string
from fhir_server.search.types.token import TokenValue, parse_of_type, parse_token
from fhir_server.search.types.uri import ancestors, parse_uri
from fhir_server.search.values import escape, split, take_prefix, unescape

P = "param"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# ---- escaping


def test_escaped_comma_is_part_of_the_value() -> None:
    assert split(r"a\,b,c", ",", P) == [r"a\,b", "c"]
    assert unescape(r"a\,b", P) == "a,b"


def test_escaped_backslash_and_dollar_and_bar_unescape() -> None:
    assert unescape(r"x\\y\$z\|w", P) == "x\\y$z|w"


def test_lone_backslash_is_rejected_naming_the_parameter() -> None:
    with pytest.raises(Invalid) as err:
        split(r"xx\xx", ",", "name")
    assert err.value.status == 400
    assert "name" in err.value.message


def test_trailing_backslash_is_rejected() -> None:
    with pytest.raises(Invalid):
        unescape("abc\\", P)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=5), st.sampled_from([",", "$", "|"]))
def test_escape_then_split_gives_back_the_pieces(pieces: list[str], sep: str) -> None:
    joined = sep.join(escape(p) for p in pieces)
    assert [unescape(p, P) for p in split(joined, sep, P)] == pieces


@given(st.text(max_size=30))
def test_split_never_fails_on_escaped_text(text: str) -> None:
    assert unescape(escape(text), P) == text


# ---- prefixes


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_prefix_is_recognised(prefix: str) -> None:
    assert take_prefix(prefix + "5", P) == (prefix, "5")


def test_value_without_prefix_means_eq() -> None:
    assert take_prefix("2013-01", P) == ("eq", "2013-01")


def test_unknown_prefix_is_rejected() -> None:
    with pytest.raises(Invalid) as err:
        take_prefix("xx5", "value")
    assert "prefix" in err.value.message and "value" in err.value.message


# ---- number


def test_integer_number_has_half_unit_range() -> None:
    v = parse_number("100", P)
    assert (v.prefix, v.low, v.high) == ("eq", Decimal("99.5"), Decimal("100.5"))


def test_trailing_zeros_narrow_the_range() -> None:
    v = parse_number("100.00", P)
    assert (v.low, v.high) == (Decimal("99.995"), Decimal("100.005"))


def test_exponent_form_has_range_of_its_last_significant_digit() -> None:
    v = parse_number("1e2", P)
    assert (v.low, v.high) == (Decimal("50"), Decimal("150"))
    w = parse_number("1.00e2", P)
    assert (w.low, w.high) == (Decimal("99.5"), Decimal("100.5"))


def test_ap_range_is_ten_percent_wide() -> None:
    v = parse_number("ap100", P)
    assert (v.ap_low, v.ap_high) == (Decimal("90.0"), Decimal("110.0"))


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "", "gt", "1e", "--1", "NaN", "Infinity", "1e999"])
def test_malformed_number_is_rejected_naming_the_parameter(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_number(bad, "probability")
    assert err.value.expression == ("probability",)


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=4))
def test_number_range_contains_the_value_and_is_one_unit_of_the_last_digit_wide(value: Decimal) -> None:
    v = parse_number(str(value), P)
    assert v.low < v.value < v.high
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    assert v.high - v.low == Decimal(1).scaleb(exponent)


# ---- date


def test_year_covers_the_whole_year() -> None:
    low, high = search_range("2024", P)
    assert low == us(datetime(2024, 1, 1, tzinfo=UTC))
    assert high == us(datetime(2025, 1, 1, tzinfo=UTC)) - 1


def test_month_and_day_precision() -> None:
    assert search_range("2024-02", P) == (
        us(datetime(2024, 2, 1, tzinfo=UTC)),
        us(datetime(2024, 3, 1, tzinfo=UTC)) - 1,
    )
    assert search_range("2013-01-14", P)[1] - search_range("2013-01-14", P)[0] == 86_400_000_000 - 1


def test_minute_second_and_fraction_precision() -> None:
    low, high = search_range("2013-01-14T10:00Z", P)
    assert high - low == 60_000_000 - 1
    low, high = search_range("2013-01-14T10:00:05Z", P)
    assert high - low == 1_000_000 - 1
    low, high = search_range("2013-01-14T10:00:05.5Z", P)
    assert high - low == 100_000 - 1


def test_time_zone_offset_shifts_the_range() -> None:
    utc = search_range("2013-01-14T10:00:00Z", P)[0]
    assert search_range("2013-01-14T10:00:00+02:00", P)[0] == utc - 2 * 3600 * 1_000_000
    # '+' decoded from a query string arrives as a space
    assert search_range("2013-01-14T10:00:00 02:00", P)[0] == utc - 2 * 3600 * 1_000_000


def test_date_without_zone_is_utc() -> None:
    assert search_range("2013-01-14T10:00:00", P) == search_range("2013-01-14T10:00:00Z", P)


@pytest.mark.parametrize(
    "bad", ["2013-13", "2013-02-30", "13-01-01", "2013-01-01T10", "2013-01-01T25:00", "soon"]
)
def test_malformed_date_is_rejected_naming_the_parameter(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_date(bad, "birthdate", 0)
    assert err.value.expression == ("birthdate",)


def test_date_ap_widens_by_a_tenth_of_the_distance_to_now() -> None:
    now = us(datetime(2024, 1, 1, tzinfo=UTC))
    v = parse_date("ap2014-01-01", P, now)
    assert v.ap_low < v.low and v.ap_high > v.high
    gap = (now - (v.low + v.high) // 2) // 10
    assert v.low - v.ap_low == gap


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["Y", "M", "D", "m", "s", "f"]),
)
def test_date_range_contains_the_instant_it_was_written_from(dt: datetime, precision: str) -> None:
    text = {
        "Y": dt.strftime("%Y"),
        "M": dt.strftime("%Y-%m"),
        "D": dt.strftime("%Y-%m-%d"),
        "m": dt.strftime("%Y-%m-%dT%H:%MZ"),
        "s": dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "f": dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }[precision]
    low, high = search_range(text, P)
    assert low <= us(dt) <= high
    widths = {
        "Y": (366 if calendar.isleap(dt.year) else 365) * 86_400_000_000,
        "M": calendar.monthrange(dt.year, dt.month)[1] * 86_400_000_000,
        "D": 86_400_000_000,
        "m": 60_000_000,
        "s": 1_000_000,
        "f": 1,
    }
    assert high - low + 1 == widths[precision]


@given(st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_offsets_are_subtracted(minutes: int) -> None:
    sign = "-" if minutes < 0 else "+"
    text = f"2020-06-01T12:00:00{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    assert search_range(text, P)[0] == us(datetime(2020, 6, 1, 12, tzinfo=UTC) - timedelta(minutes=minutes))


# ---- token, quantity, reference, string, uri, composite


def test_token_forms() -> None:
    assert parse_token("abc", P) == TokenValue(None, "abc", False)
    assert parse_token("http://s|abc", P) == TokenValue("http://s", "abc", True)
    assert parse_token("|abc", P) == TokenValue(None, "abc", True)
    assert parse_token("http://s|", P) == TokenValue("http://s", None, True)


def test_token_code_may_hold_an_escaped_bar() -> None:
    assert parse_token(r"s|a\|b", P) == TokenValue("s", "a|b", True)


def test_token_with_nothing_is_rejected() -> None:
    with pytest.raises(Invalid):
        parse_token("|", P)


def test_of_type_needs_three_parts() -> None:
    v = parse_of_type("http://t|MR|123", P)
    assert (v.type_system, v.type_code, v.value) == ("http://t", "MR", "123")
    with pytest.raises(Invalid):
        parse_of_type("http://t|MR", P)


@given(st.text(min_size=1, max_size=10), st.text(max_size=10))
def test_token_round_trips_through_escaping(system: str, code: str) -> None:
    v = parse_token(escape(system) + "|" + escape(code), P)
    assert (v.system, v.code) == (system, code or None)


def test_quantity_forms() -> None:
    q = parse_quantity("le5.4|http://unitsofmeasure.org|mg", P)
    assert (q.number.prefix, q.number.value, q.system, q.code) == (
        "le",
        Decimal("5.4"),
        "http://unitsofmeasure.org",
        "mg",
    )
    q = parse_quantity("5.4||mg", P)
    assert (q.system, q.code) == (None, "mg")
    q = parse_quantity("5.4", P)
    assert (q.system, q.code, q.number.low, q.number.high) == (None, None, Decimal("5.35"), Decimal("5.45"))


@pytest.mark.parametrize("bad", ["5.4|mg", "abc||mg", "xx5||mg", "5.4|http://u|"])
def test_malformed_quantity_is_rejected(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_quantity(bad, "value-quantity")
    assert err.value.expression == ("value-quantity",)


def test_reference_forms() -> None:
    assert parse_reference("123", P) == ReferenceValue(None, "123", None)
    assert parse_reference("Patient/123", P) == ReferenceValue("Patient", "123", None)
    assert parse_reference("Patient/123/_history/2", P) == ReferenceValue("Patient", "123", None)
    assert parse_reference("http://x.org/fhir/Patient/1", P) == ReferenceValue(
        None, None, "http://x.org/fhir/Patient/1"
    )
    assert parse_reference("23", P, type_modifier="Patient") == ReferenceValue("Patient", "23", None)


def test_reference_with_unknown_type_is_rejected() -> None:
    with pytest.raises(Invalid):
        parse_reference("Nonsense/1", "subject")


def test_string_is_normalised_for_case_and_accents() -> None:
    assert parse_string("  Émile   ZOLA ", P).norm == "emile zola"
    assert normalize("Straße") == "strasse"


def test_uri_ancestors_walk_up_path_segments() -> None:
    got = ancestors("http://acme.org/fhir/ValueSet/123")
    assert got[0] == "http://acme.org/fhir/ValueSet/123"
    assert "http://acme.org/fhir" in got and "http://acme.org" in got
    assert ancestors("urn:oid:1.2.3") == ("urn:oid:1.2.3",)
    assert parse_uri("urn:oid:1.2.3", P).uri == "urn:oid:1.2.3"


def test_composite_splits_on_unescaped_dollar() -> None:
    v = parse_composite(r"a\$b$5", P, [lambda s: parse_token(s, P), lambda s: parse_number(s, P)])
    assert v.parts[0] == TokenValue(None, "a$b", False)
    assert v.parts[1].value == Decimal("5")
    with pytest.raises(Invalid):
        parse_composite("a", P, [lambda s: s, lambda s: s])


@given(st.lists(st.text(max_size=8), min_size=1, max_size=5), st.sampled_from([",", "|", "$"]))
def test_split_round_trips_pieces_with_and_without_escapes(pieces: list[str], sep: str) -> None:
    """`split` has a fast path for text without a backslash; with one it walks the escapes. Either
    way the escaped pieces joined by the separator come back as the pieces."""
    joined = sep.join(escape(p) for p in pieces)
    assert [unescape(p, P) for p in split(joined, sep, P)] == pieces
    assert len(split(joined, sep, P, maxsplit=1)) == min(len(pieces), 2)
