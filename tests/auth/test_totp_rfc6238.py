"""TOTP per RFC 6238 (https://www.rfc-editor.org/rfc/rfc6238), SHA-1, 30 s steps."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth.totp import (
    decode_secret,
    generate,
    generate_secret,
    provisioning_uri,
    time_step,
    verify,
)

RFC_KEY = b"12345678901234567890"  # RFC 6238 Appendix B, SHA-1 seed

# RFC 6238 Appendix B: time, 8-digit SHA-1 TOTP
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_rfc_6238_sha1_test_vectors(at: int, code: str) -> None:
    assert generate(RFC_KEY, at, digits=8) == code


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_six_digit_codes_are_the_last_six_digits(at: int, code: str) -> None:
    assert generate(RFC_KEY, at) == code[-6:]
    assert verify(RFC_KEY, code[-6:], at) == time_step(at)


def test_one_step_of_clock_drift_either_way_is_accepted() -> None:
    at = 1111111111
    assert verify(RFC_KEY, generate(RFC_KEY, at - 30), at) == time_step(at) - 1
    assert verify(RFC_KEY, generate(RFC_KEY, at + 30), at) == time_step(at) + 1


def test_two_steps_of_drift_are_refused() -> None:
    at = 1111111111
    assert verify(RFC_KEY, generate(RFC_KEY, at - 60), at) is None
    assert verify(RFC_KEY, generate(RFC_KEY, at + 60), at) is None


def test_a_code_is_not_accepted_twice() -> None:
    at = 1234567890
    code = generate(RFC_KEY, at)
    used = verify(RFC_KEY, code, at)
    assert used is not None
    assert verify(RFC_KEY, code, at + 10, last_used_step=used) is None
    assert verify(RFC_KEY, generate(RFC_KEY, at - 30), at, last_used_step=used) is None  # nor an older one
    assert verify(RFC_KEY, generate(RFC_KEY, at + 30), at + 30, last_used_step=used) == used + 1


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "12 345", "\uff11\uff12\uff13\uff14\uff15\uff16"]
)
def test_malformed_codes_are_refused(code: str) -> None:
    assert verify(RFC_KEY, code, 59) is None


def test_new_secrets_are_160_bit_base32() -> None:
    secret = generate_secret()
    assert len(decode_secret(secret)) == 20
    assert secret != generate_secret()


def test_base32_secrets_forgive_case_spacing_and_padding() -> None:
    assert decode_secret("gezd gnbv-gy3t qojq") == decode_secret("GEZDGNBVGY3TQOJQ") == b"1234567890"


@pytest.mark.parametrize("text", ["", "   ", "not base32!", "0189"])
def test_text_that_is_not_base32_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(text)


def test_provisioning_uri_names_issuer_account_and_parameters() -> None:
    uri = provisioning_uri("GEZDGNBVGY3TQOJQ", "alice@example.org", "FHIR Server")
    assert uri.startswith("otpauth://totp/FHIR%20Server:alice@example.org?secret=GEZDGNBVGY3TQOJQ&")
    assert "algorithm=SHA1" in uri and "digits=6" in uri and "period=30" in uri


@given(st.binary(min_size=1, max_size=64))
def test_any_key_survives_base32_encoding(key: bytes) -> None:
    text = base64.b32encode(key).decode().rstrip("=").lower()
    assert decode_secret(text) == key


@given(st.text(max_size=40))
def test_any_text_decodes_to_bytes_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(decode_secret(text), bytes)


@given(st.binary(min_size=10, max_size=32), st.integers(min_value=0, max_value=2**40))
def test_a_fresh_code_always_verifies_at_its_own_time(key: bytes, at: int) -> None:
    code = generate(key, at)
    assert len(code) == 6 and code.isdigit()
    assert verify(key, code, at) is not None
