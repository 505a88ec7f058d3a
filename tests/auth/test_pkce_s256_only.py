"""PKCE with S256 only (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#considerations-for-pkce-support, RFC 7636)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth.pkce import (
    METHODS_SUPPORTED,
    PkceError,
    challenge,
    check_challenge,
    is_valid_verifier,
    verify,
)

# RFC 7636 Appendix B
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
verifiers = st.text(st.sampled_from(UNRESERVED), min_size=43, max_size=128)


def test_s256_challenge_matches_the_rfc_7636_example() -> None:
    assert challenge(RFC_VERIFIER) == RFC_CHALLENGE
    verify(RFC_VERIFIER, RFC_CHALLENGE, "S256")


def test_only_s256_is_advertised() -> None:
    assert METHODS_SUPPORTED == ("S256",)


def test_authorization_request_with_s256_challenge_is_accepted() -> None:
    assert check_challenge(RFC_CHALLENGE, "S256") == RFC_CHALLENGE


@pytest.mark.parametrize(
    ("code_challenge", "method"),
    [
        (None, "S256"),  # no PKCE at all
        ("", "S256"),
        ("   ", "S256"),
        (RFC_CHALLENGE, None),  # no method means plain in RFC 7636
        (RFC_CHALLENGE, "plain"),
        (RFC_CHALLENGE, "s256"),
        (RFC_VERIFIER + "x", "S256"),  # not a SHA-256 digest
        (RFC_CHALLENGE + "=", "S256"),
    ],
)
def test_authorization_request_without_a_proper_s256_challenge_is_refused(
    code_challenge: str | None, method: str | None
) -> None:
    with pytest.raises(PkceError):
        check_challenge(code_challenge, method)


@pytest.mark.parametrize(
    "code_verifier",
    [
        None,
        "",
        "   ",
        RFC_VERIFIER[:42],  # too short
        RFC_VERIFIER * 3,  # 129 characters
        RFC_VERIFIER[:-1] + "+",  # outside [A-Za-z0-9-._~]
        RFC_VERIFIER[:-1] + "é",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",  # well-formed but wrong
    ],
)
def test_token_request_without_the_right_verifier_is_refused(code_verifier: str | None) -> None:
    with pytest.raises(PkceError):
        verify(code_verifier, RFC_CHALLENGE)


def test_plain_method_is_refused_even_when_verifier_equals_challenge() -> None:
    with pytest.raises(PkceError):
        verify(RFC_VERIFIER, RFC_VERIFIER, "plain")


@given(verifiers)
def test_any_valid_verifier_matches_its_own_challenge(code_verifier: str) -> None:
    assert is_valid_verifier(code_verifier)
    verify(code_verifier, challenge(code_verifier))


@given(verifiers, verifiers)
def test_a_verifier_never_matches_another_verifiers_challenge(a: str, b: str) -> None:
    if a != b:
        with pytest.raises(PkceError):
            verify(a, challenge(b))


@given(st.text(max_size=140))
def test_verifier_syntax_is_exactly_rfc_7636(text: str) -> None:
    expected = 43 <= len(text) <= 128 and all(c in UNRESERVED for c in text)
    assert is_valid_verifier(text) == expected


@given(st.text(max_size=140), st.text(max_size=60))
def test_verify_refuses_arbitrary_input_with_pkce_error_only(code_verifier: str, code_challenge: str) -> None:
    try:
        verify(code_verifier, code_challenge)
    except PkceError:
        return
    assert challenge(code_verifier) == code_challenge
