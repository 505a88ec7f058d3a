"""PKCE, S256 only (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#considerations-for-pkce-support).

SMART servers SHALL support `S256` and SHALL NOT support `plain`; the `code_verifier` SHALL be present
and valid when the code is exchanged. Syntax from RFC 7636 section 4.1 (verifier) and 4.2 (challenge).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

METHOD = "S256"
METHODS_SUPPORTED = (METHOD,)  # for code_challenge_methods_supported in .well-known/smart-configuration

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")  # BASE64URL(SHA-256) without padding


class PkceError(ValueError):
    """PKCE failed; at the authorization endpoint this is `invalid_request`, at the token endpoint
    `invalid_grant`."""


def is_valid_verifier(code_verifier: str) -> bool:
    """43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~" (RFC 7636 section 4.1)."""
    return _VERIFIER.fullmatch(code_verifier) is not None


def challenge(code_verifier: str) -> str:
    """The S256 code_challenge of a verifier: BASE64URL(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(code_challenge: str | None, code_challenge_method: str | None) -> str:
    """Validate the authorization request's PKCE parameters; return the challenge to store.

    A missing challenge is refused (SMART requires PKCE), and so is any method but S256, including a
    missing method (which RFC 7636 would read as `plain`).
    """
    if not code_challenge or not code_challenge.strip():
        raise PkceError("code_challenge is required")
    if code_challenge_method != METHOD:
        raise PkceError("code_challenge_method must be S256")
    if not _CHALLENGE.fullmatch(code_challenge):
        raise PkceError("code_challenge is not a base64url SHA-256 digest")
    return code_challenge


def verify(code_verifier: str | None, code_challenge: str, code_challenge_method: str = METHOD) -> None:
    """At the token endpoint: the verifier must be present, well-formed and hash to the challenge."""
    if code_challenge_method != METHOD:
        raise PkceError("code_challenge_method must be S256")
    if code_verifier is None or not code_verifier.strip():
        raise PkceError("code_verifier is required")
    if not is_valid_verifier(code_verifier):
        raise PkceError("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    if not hmac.compare_digest(challenge(code_verifier).encode(), code_challenge.encode()):
        raise PkceError("code_verifier does not match the code_challenge")
