"""Argon2id password hashing (https://www.rfc-editor.org/rfc/rfc9106.html)."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.auth.passwords import hash_password, needs_rehash, verify_password


def test_hash_is_an_argon2id_phc_string_with_a_random_salt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$v=19$")
    assert first != second


def test_the_right_password_verifies_and_a_wrong_one_does_not() -> None:
    stored = hash_password("correct horse")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horse ")
    assert not verify_password(stored, "")


def test_hashes_of_other_argon2_variants_are_not_accepted() -> None:
    argon2i = PasswordHasher(type=Type.I, time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert not verify_password(argon2i, "pw")


def test_hashes_made_with_weaker_parameters_need_rehashing() -> None:
    weak = PasswordHasher(type=Type.ID, time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak)
    assert not needs_rehash(hash_password("pw"))
    assert needs_rehash("not a hash")


@settings(max_examples=3, deadline=None)  # each Argon2id run costs ~64 MiB and a few 100 ms
@given(st.text(max_size=40), st.text(max_size=40))
def test_a_password_verifies_against_its_own_hash_only(password: str, other: str) -> None:
    stored = hash_password(password)
    assert verify_password(stored, password)
    assert verify_password(stored, other) == (other == password)


@given(st.text(max_size=120))
def test_any_stored_text_that_is_not_a_hash_fails_closed(stored: str) -> None:
    assert verify_password(stored, "pw") is False
    assert verify_password("$argon2id$" + stored, "pw") is False
