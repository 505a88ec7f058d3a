"""Password hashing with Argon2id (https://www.rfc-editor.org/rfc/rfc9106.html), for the login of SMART users.

Parameters are argon2-cffi's defaults, RFC 9106's "second recommended option" (t=3, 64 MiB, p=4).
Hashes are self-describing PHC strings, so stronger parameters later only need `needs_rehash`.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(type=Type.ID)


def hash_password(password: str) -> str:
    """An Argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) with a random salt."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when `password` matches; False for a wrong password or a hash that is not Argon2id."""
    if not stored_hash.startswith("$argon2id$"):
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError, ValueError):  # mismatch, malformed, or not ASCII
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash at next login)."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True
