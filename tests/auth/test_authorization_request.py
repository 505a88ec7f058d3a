"""Validating authorization requests (fhir_server/auth/authorization_request.py; https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-authorization-code)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth import pkce
from fhir_server.auth.authorization_request import AuthorizationRequest, AuthorizeError, validate, with_query
from fhir_server.auth.clients import Client
from fhir_server.auth.launch import LaunchContext

BASE = "https://fhir.example.org/r4"
REDIRECT = "https://app.example.org/cb?tenant=1"
CLIENT = Client("app", "public", redirect_uris=(REDIRECT,))
LAUNCHES = {"L1": LaunchContext(patient="p1")}
CHALLENGE = pkce.challenge("v" * 43)
GOOD = {
    "response_type": "code",
    "client_id": "app",
    "redirect_uri": REDIRECT,
    "scope": "launch/patient patient/*.rs openid",
    "state": "s1",
    "aud": BASE,
    "code_challenge": CHALLENGE,
    "code_challenge_method": "S256",
}


def check(params: list[tuple[str, str]]) -> AuthorizationRequest:
    return validate(params, fhir_base=BASE, lookup_client={"app": CLIENT}.get, resolve_launch=LAUNCHES.get)


def test_a_good_request_is_accepted() -> None:
    request = check(list(GOOD.items()))
    assert request.client is CLIENT and request.state == "s1" and not request.ehr_launch


def test_aud_may_differ_only_by_a_trailing_slash() -> None:
    assert check(list({**GOOD, "aud": BASE + "/"}.items())).redirect_uri == REDIRECT


def test_an_issued_launch_brings_its_context() -> None:
    request = check(list({**GOOD, "launch": "L1", "scope": "launch patient/*.rs"}.items()))
    assert request.ehr_launch and request.context.patient == "p1"


def test_errors_keep_the_registered_redirect_uri_and_its_query() -> None:
    try:
        check(list({**GOOD, "aud": "https://evil.example.org"}.items()))
    except AuthorizeError as error:
        location = error.location()
        assert location is not None
        query = dict(parse_qsl(urlsplit(location).query))
        assert location.startswith("https://app.example.org/cb?")
        assert query == {
            "tenant": "1",
            "error": "invalid_request",
            "error_description": query["error_description"],
            "state": "s1",
        }
    else:
        raise AssertionError("aud was not checked")


names = st.sampled_from([*GOOD, "launch", "nonce", "other"])
values = st.one_of(
    st.sampled_from([*GOOD.values(), "L1", "", "https://evil.example.org/cb"]), st.text(max_size=30)
)


@given(st.lists(st.tuples(names, values), max_size=14))
def test_any_parameters_give_a_request_or_an_error_that_never_redirects_elsewhere(
    params: list[tuple[str, str]],
) -> None:
    try:
        request = check(params)
    except AuthorizeError as error:
        location = error.location()
        assert location is None or location.startswith(REDIRECT)
    else:
        assert request.redirect_uri == REDIRECT
        assert request.code_challenge == CHALLENGE
        assert dict(params)["aud"].rstrip("/") == BASE


@given(
    st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=4),
    st.dictionaries(st.sampled_from(["code", "state", "error"]), st.text(max_size=20), max_size=3),
)
def test_with_query_keeps_the_uri_and_adds_the_parameters(
    existing: dict[str, str], added: dict[str, str]
) -> None:
    from urllib.parse import urlencode

    uri = "https://app.example.org/cb" + ("?" + urlencode(existing) if existing else "")
    result = with_query(uri, added)
    parts = urlsplit(result)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "app.example.org", "/cb")
    assert parse_qsl(parts.query, keep_blank_values=True) == [*existing.items(), *added.items()]
