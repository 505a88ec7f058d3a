"""Opaque random credentials and their stored digests (https://www.rfc-editor.org/rfc/rfc6749#section-10.10).

Authorization codes, refresh tokens, client secrets, `launch` values and authorization request
handles are 256-bit random strings; the database keeps only their SHA-256 digest, so a copy of the
database does not yield usable credentials.
"""

from __future__ import annotations

import hashlib
import secrets

BYTES = 32


def new() -> str:
    """A fresh unguessable value, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(BYTES)


def digest(value: str) -> str:
    """The hex SHA-256 digest under which a credential is stored and looked up."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
