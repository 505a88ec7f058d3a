"""Validating private_key_jwt client assertions (https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html#signature-verification)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, RSAKey

from fhir_server.auth.client_assertion import (
    ClientAssertionVerifier,
    FetchedJwks,
    InvalidClient,
    JwksCache,
    MemoryJtiStore,
    RegisteredClient,
)

TOKEN_URL = "https://fhir.example.org/auth/token"
JWKS_URL = "https://client.example.com/jwks.json"
NOW = 1_700_000_000


def _rsa(kid: str) -> RSAKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSAKey.import_key(private, {"kid": kid})


def _ec(kid: str) -> ECKey:
    return ECKey.import_key(ec.generate_private_key(ec.SECP384R1()), {"kid": kid})


RSA_KEY = _rsa("rsa-1")
EC_KEY = _ec("ec-1")
OTHER_RSA_KEY = _rsa("rsa-1")  # same kid, different key


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def sign(
    key: RSAKey | ECKey | OctKey,
    alg: str,
    *,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    body = {"iss": "bulk", "sub": "bulk", "aud": TOKEN_URL, "exp": NOW + 240, "jti": str(uuid.uuid4())}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    head = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
    head = {k: v for k, v in head.items() if v is not None}
    return jws.serialize_compact(head, json.dumps(body), key, algorithms=[alg])


class FakeFetcher:
    def __init__(self, jwks: dict[str, Any], max_age: float = 300) -> None:
        self.jwks = jwks
        self.max_age = max_age
        self.urls: list[str] = []

    def __call__(self, url: str) -> FetchedJwks:
        self.urls.append(url)
        if url != JWKS_URL:
            raise ConnectionError(url)
        return FetchedJwks(self.jwks, self.max_age)


CLIENTS = {
    "bulk": RegisteredClient("bulk", jwks=public_jwks(RSA_KEY, EC_KEY)),
    "hosted": RegisteredClient("hosted", jwks_uri=JWKS_URL),
}


def make_verifier(
    fetcher: Callable[[str], FetchedJwks] | None = None, **options: Any
) -> ClientAssertionVerifier:
    clock = options.pop("clock", lambda: NOW)
    cache = JwksCache(fetcher or FakeFetcher(public_jwks(RSA_KEY, EC_KEY)), clock=clock)
    return ClientAssertionVerifier(
        TOKEN_URL, CLIENTS.get, MemoryJtiStore(clock), cache, clock=clock, **options
    )


def refused(verifier: ClientAssertionVerifier, assertion: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidClient) as caught:
        verifier.verify(assertion, **kwargs)
    assert caught.value.error == "invalid_client"
    return caught.value.reason


def test_rs384_assertion_with_registered_jwks_is_accepted() -> None:
    result = make_verifier().verify(sign(RSA_KEY, "RS384", jti="a-1"), client_id="bulk")
    assert (result.client_id, result.jti, result.alg, result.kid) == ("bulk", "a-1", "RS384", "rsa-1")


def test_es384_assertion_with_registered_jwks_is_accepted() -> None:
    assert make_verifier().verify(sign(EC_KEY, "ES384")).alg == "ES384"


def test_assertion_with_keys_at_the_registered_jwks_url_is_accepted() -> None:
    fetcher = FakeFetcher(public_jwks(EC_KEY))
    make_verifier(fetcher).verify(sign(EC_KEY, "ES384", iss="hosted", sub="hosted"))
    assert fetcher.urls == [JWKS_URL]


def test_jku_naming_the_registered_jwks_url_is_accepted() -> None:
    assertion = sign(RSA_KEY, "RS384", iss="hosted", sub="hosted", header={"jku": JWKS_URL})
    make_verifier().verify(assertion)


def test_jku_other_than_the_registered_jwks_url_is_refused() -> None:
    fetcher = FakeFetcher(public_jwks(RSA_KEY))
    assertion = sign(
        RSA_KEY, "RS384", iss="hosted", sub="hosted", header={"jku": "https://evil.example/jwks"}
    )
    assert "jku" in refused(make_verifier(fetcher), assertion)
    assert fetcher.urls == []  # never fetched


def test_jku_for_a_client_registered_with_an_inline_jwks_is_refused() -> None:
    assert "jku" in refused(make_verifier(), sign(RSA_KEY, "RS384", header={"jku": JWKS_URL}))


def test_bad_signature_is_refused() -> None:
    assert "signature" in refused(make_verifier(), sign(OTHER_RSA_KEY, "RS384"))


def test_tampered_claims_are_refused() -> None:
    header, _, signature = sign(RSA_KEY, "RS384").split(".")
    forged = {"iss": "bulk", "sub": "bulk", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "forged"}
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert "signature" in refused(make_verifier(), f"{header}.{body}.{signature}")


def test_wrong_audience_is_refused() -> None:
    assert "aud" in refused(make_verifier(), sign(RSA_KEY, "RS384", aud="https://other.example/token"))


def test_audience_list_containing_the_token_url_is_accepted() -> None:
    make_verifier().verify(sign(RSA_KEY, "RS384", aud=[TOKEN_URL, "https://other.example"]))


def test_exp_ten_minutes_ahead_is_refused() -> None:
    assert "five minutes" in refused(make_verifier(), sign(RSA_KEY, "RS384", exp=NOW + 600))


def test_exp_five_minutes_ahead_is_accepted() -> None:
    make_verifier().verify(sign(RSA_KEY, "RS384", exp=NOW + 300))


def test_expired_assertion_is_refused() -> None:
    assert "expired" in refused(make_verifier(), sign(RSA_KEY, "RS384", exp=NOW - 60))


def test_assertion_just_expired_within_leeway_is_accepted() -> None:
    make_verifier().verify(sign(RSA_KEY, "RS384", exp=NOW - 5))


@pytest.mark.parametrize("exp", [None, "1700000100", 1700000100.5, True])
def test_assertion_without_an_integer_exp_is_refused(exp: object) -> None:
    assertion = sign(RSA_KEY, "RS384", exp=exp) if exp is not None else _without(RSA_KEY, "exp")
    assert "exp" in refused(make_verifier(), assertion)


def _without(key: RSAKey, claim: str) -> str:
    body = {"iss": "bulk", "sub": "bulk", "aud": TOKEN_URL, "exp": NOW + 60, "jti": str(uuid.uuid4())}
    del body[claim]
    return jws.serialize_compact(
        {"alg": "RS384", "kid": key.kid}, json.dumps(body), key, algorithms=["RS384"]
    )


def test_assertion_not_yet_valid_is_refused() -> None:
    assert "nbf" in refused(make_verifier(), sign(RSA_KEY, "RS384", nbf=NOW + 120))


def test_replayed_jti_is_refused() -> None:
    verifier = make_verifier()
    verifier.verify(sign(RSA_KEY, "RS384", jti="once"))
    assert "jti" in refused(verifier, sign(RSA_KEY, "RS384", jti="once"))


def test_the_same_jti_from_two_clients_is_not_a_replay() -> None:
    verifier = make_verifier()
    verifier.verify(sign(RSA_KEY, "RS384", jti="shared"))
    verifier.verify(sign(RSA_KEY, "RS384", jti="shared", iss="hosted", sub="hosted"))


def test_assertion_without_jti_is_refused() -> None:
    assert "jti" in refused(make_verifier(), _without(RSA_KEY, "jti"))


def test_unknown_kid_is_refused() -> None:
    assert "kid" in refused(make_verifier(), sign(_rsa("rsa-unknown"), "RS384"))


def test_missing_kid_is_refused() -> None:
    assert "kid" in refused(make_verifier(), sign(RSA_KEY, "RS384", header={"kid": None}))


def test_key_whose_kty_does_not_fit_the_algorithm_is_not_used() -> None:
    ec_with_rsa_kid = _ec("rsa-1")
    assert "kid" in refused(make_verifier(), sign(ec_with_rsa_kid, "ES384", iss="hosted", sub="hosted"))


def test_two_keys_with_the_same_kid_are_refused() -> None:
    fetcher = FakeFetcher(public_jwks(RSA_KEY, OTHER_RSA_KEY))
    assertion = sign(RSA_KEY, "RS384", iss="hosted", sub="hosted")
    assert "more than one" in refused(make_verifier(fetcher), assertion)


def test_iss_different_from_sub_is_refused() -> None:
    assert "iss" in refused(make_verifier(), sign(RSA_KEY, "RS384", sub="someone-else"))


def test_client_id_parameter_must_match_iss() -> None:
    assert "client_id" in refused(make_verifier(), sign(RSA_KEY, "RS384"), client_id="hosted")


def test_unknown_client_is_refused() -> None:
    assert "unknown" in refused(make_verifier(), sign(RSA_KEY, "RS384", iss="nobody", sub="nobody"))


def test_wrong_assertion_type_is_refused() -> None:
    assert "type" in refused(make_verifier(), sign(RSA_KEY, "RS384"), assertion_type="urn:other")


def test_rs256_is_refused_unless_enabled() -> None:
    assert "algorithm" in refused(make_verifier(), sign(RSA_KEY, "RS256"))
    make_verifier(algorithms=frozenset({"RS384", "ES384", "RS256"})).verify(sign(RSA_KEY, "RS256"))


def test_hmac_and_none_algorithms_are_refused_and_cannot_be_enabled() -> None:
    secret = OctKey.import_key("a-shared-secret-that-is-long-enough-for-hs256", {"kid": "rsa-1"})
    assert "algorithm" in refused(make_verifier(), sign(secret, "HS256"))
    unsigned = sign(RSA_KEY, "RS384").rsplit(".", 1)[0].split(".")[1]
    none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoicnNhLTEifQ"  # {"alg":"none",...}
    assert "algorithm" in refused(make_verifier(), f"{none_header}.{unsigned}.")
    for bad in ("HS256", "none"):
        with pytest.raises(ValueError):
            make_verifier(algorithms=frozenset({"RS384", bad}))


def test_embedded_jwk_header_is_refused() -> None:
    header = {"jwk": RSA_KEY.as_dict(private=False)}
    refused(make_verifier(), sign(RSA_KEY, "RS384", header=header))


def test_typ_other_than_jwt_is_refused() -> None:
    assert "typ" in refused(make_verifier(), sign(RSA_KEY, "RS384", header={"typ": "at+jwt"}))


def test_rotated_client_key_is_found_by_refetching_the_jwks() -> None:
    new_key = _ec("ec-2")
    fetcher = FakeFetcher(public_jwks(EC_KEY))
    clock = [NOW]
    verifier = make_verifier(fetcher, clock=lambda: clock[0])
    verifier.verify(sign(EC_KEY, "ES384", iss="hosted", sub="hosted"))
    fetcher.jwks = public_jwks(EC_KEY, new_key)
    clock[0] += 30
    verifier.verify(sign(new_key, "ES384", iss="hosted", sub="hosted"))
    assert fetcher.urls == [JWKS_URL, JWKS_URL]


def test_unreachable_jwks_url_is_refused() -> None:
    def failing(url: str) -> FetchedJwks:
        raise TimeoutError(url)

    assert "fetched" in refused(make_verifier(failing), sign(EC_KEY, "ES384", iss="hosted", sub="hosted"))


def test_short_rsa_keys_are_refused() -> None:
    weak_private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.warns(SecurityWarning):  # joserfc warns about the weak key itself
        weak = RSAKey.import_key(weak_private, {"kid": "weak"})
    clients = {"weak": RegisteredClient("weak", jwks=public_jwks(weak))}
    verifier = ClientAssertionVerifier(TOKEN_URL, clients.get, MemoryJtiStore(lambda: NOW), clock=lambda: NOW)
    assertion = sign(weak, "RS384", iss="weak", sub="weak")
    assert "2048" in refused(verifier, assertion)


@given(st.text(max_size=300))
def test_any_malformed_assertion_fails_with_invalid_client_only(text: str) -> None:
    with pytest.raises(InvalidClient):
        make_verifier().verify(text)


def test_jti_store_remembers_a_jti_until_its_assertion_can_no_longer_be_valid() -> None:
    clock = [float(NOW)]
    store = MemoryJtiStore(lambda: clock[0])
    assert store.remember("bulk", "j", NOW + 300)
    clock[0] = NOW + 300 + 299  # past exp, still within the retention
    assert not store.remember("bulk", "j", NOW + 300)
    clock[0] = NOW + 300 + 400  # long expired: an assertion carrying it is refused as expired anyway
    assert store.remember("bulk", "j", NOW + 300)
