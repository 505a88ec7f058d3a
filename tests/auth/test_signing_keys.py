"""The server's RS256 signing key and public JWKS (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-identity-data)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.auth.keys import KEY_FILE, InvalidToken, SigningKeys

NOW = 1_700_000_000
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return SigningKeys.load_or_create(tmp_path_factory.mktemp("keys"))


def test_first_start_generates_a_key_file_only_the_owner_can_read(tmp_path: Path) -> None:
    SigningKeys.load_or_create(tmp_path / "keys")
    path = tmp_path / "keys" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) & 0o077 == 0
    assert json.loads(path.read_text())["kty"] == "RSA"
    assert [p.name for p in (tmp_path / "keys").iterdir()] == [KEY_FILE]  # no temporary left behind


def test_next_start_loads_the_same_key(tmp_path: Path) -> None:
    first = SigningKeys.load_or_create(tmp_path)
    again = SigningKeys.load_or_create(tmp_path)
    assert again.kid == first.kid
    assert again.verify_jwt(first.sign_jwt({"exp": NOW + 60}), now=NOW) == {"exp": NOW + 60}


def test_a_key_file_readable_by_others_is_tightened_to_0600(tmp_path: Path) -> None:
    SigningKeys.load_or_create(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    SigningKeys.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    kids: list[str] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        kids.append(SigningKeys.load_or_create(tmp_path).kid)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1 and len(kids) == 4
    assert os.listdir(tmp_path) == [KEY_FILE]


def test_public_jwks_holds_bare_rsa_keys_and_nothing_private(keys: SigningKeys) -> None:
    (jwk,) = keys.jwks()["keys"]
    assert {"kty", "n", "e", "kid"} <= jwk.keys()
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & jwk.keys()


def test_tokens_are_signed_rs256_and_verifiable_with_the_published_jwks(keys: SigningKeys) -> None:
    token = keys.sign_jwt({"iss": "https://fhir.example.org", "sub": "u1", "exp": NOW + 300})
    decoded = jwt.decode(
        token, KeySet.import_key_set({"keys": keys.jwks()["keys"]}), algorithms=["RS256"]
    )  # as a client would
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": keys.kid}
    assert decoded.claims["sub"] == "u1"


def test_verify_returns_the_claims_of_a_valid_token(keys: SigningKeys) -> None:
    claims = {"iss": "https://fhir.example.org", "aud": "app", "exp": NOW + 300, "scope": "patient/*.rs"}
    token = keys.sign_jwt(claims)
    assert keys.verify_jwt(token, audience="app", issuer="https://fhir.example.org", now=NOW) == claims


def test_expired_token_is_not_accepted(keys: SigningKeys) -> None:
    token = keys.sign_jwt({"exp": NOW})
    with pytest.raises(InvalidToken, match="expired"):
        keys.verify_jwt(token, now=NOW)
    assert keys.verify_jwt(token, now=NOW - 1) == {"exp": NOW}


def test_token_without_exp_is_not_accepted(keys: SigningKeys) -> None:
    with pytest.raises(InvalidToken, match="exp"):
        keys.verify_jwt(keys.sign_jwt({"sub": "u1"}), now=NOW)


def test_token_not_yet_valid_is_not_accepted(keys: SigningKeys) -> None:
    with pytest.raises(InvalidToken, match="not yet"):
        keys.verify_jwt(keys.sign_jwt({"exp": NOW + 600, "nbf": NOW + 300}), now=NOW)


def test_token_for_another_audience_or_issuer_is_not_accepted(keys: SigningKeys) -> None:
    token = keys.sign_jwt({"iss": "https://a.example", "aud": ["app-1"], "exp": NOW + 60})
    keys.verify_jwt(token, audience="app-1", now=NOW)
    with pytest.raises(InvalidToken, match="audience"):
        keys.verify_jwt(token, audience="app-2", now=NOW)
    with pytest.raises(InvalidToken, match="issuer"):
        keys.verify_jwt(token, issuer="https://b.example", now=NOW)


def test_token_signed_by_another_key_is_not_accepted(keys: SigningKeys, tmp_path: Path) -> None:
    other = SigningKeys.load_or_create(tmp_path)
    with pytest.raises(InvalidToken):
        keys.verify_jwt(other.sign_jwt({"exp": NOW + 60}), now=NOW)


def test_tampered_token_is_not_accepted(keys: SigningKeys) -> None:
    header, payload, signature = keys.sign_jwt({"scope": "patient/Observation.rs", "exp": NOW + 60}).split(
        "."
    )
    forged = keys.sign_jwt({"scope": "system/*.cruds", "exp": NOW + 60}).split(".")[1]
    with pytest.raises(InvalidToken):
        keys.verify_jwt(f"{header}.{forged}.{signature}", now=NOW)
    assert payload != forged


@given(st.text(max_size=200))
def test_any_malformed_token_is_refused_with_invalid_token_only(keys: SigningKeys, text: str) -> None:
    with pytest.raises(InvalidToken):
        keys.verify_jwt(text, now=NOW)
