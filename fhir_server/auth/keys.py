"""The server's signing key and its public JWKS (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-identity-data).

SMART's `sso-openid-connect` requires signing ID tokens with RSA SHA-256 and publishing the public
keys as bare JWKs. The key is generated on first start into a folder, written with mode 0600, and
loaded on later starts; several processes starting at once end up with the same key.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

ALGORITHM = "RS256"
KEY_FILE = "signing-key.json"
KEY_BITS = 2048


class InvalidToken(ValueError):
    """A token we were asked to verify is not one we issued, or no longer valid."""


@dataclass(frozen=True)
class SigningKeys:
    """The server's RS256 key: sign JWTs, verify our own, publish the public half."""

    key: RSAKey

    @classmethod
    def load_or_create(cls, folder: str | os.PathLike[str]) -> SigningKeys:
        """Load the key kept in `folder`, generating and saving one there first if there is none."""
        directory = Path(folder)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / KEY_FILE
        if not path.exists():
            _write_new_key(path)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        return cls(RSAKey.import_key(json.loads(path.read_text())))

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: bare RSA keys (kty, n, e) with kid, use and alg; nothing private."""
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def sign_jwt(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS of `claims`, header {alg: RS256, typ: JWT, kid}."""
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": self.kid}
        payload = json.dumps(dict(claims), separators=(",", ":"))
        return jws.serialize_compact(header, payload, self.key, algorithms=[ALGORITHM])

    def verify_jwt(
        self,
        token: str,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        now: float | None = None,
        leeway: int = 0,
    ) -> dict[str, Any]:
        """The claims of a JWT we signed. Raises `InvalidToken` on a bad signature, another key,
        expiry (`exp` is required), a future `nbf`, or a mismatching `aud` / `iss` when asked."""
        try:
            parts = jws.extract_compact(token.encode("ascii"))
            header = parts.headers()
            if header.get("alg") != ALGORITHM or header.get("kid") != self.kid:
                raise InvalidToken("token not signed with this server's key")
            verified = jws.deserialize_compact(token, self.key, algorithms=[ALGORITHM])
            claims = json.loads(verified.payload or b"")
        except (JoseError, ValueError, UnicodeError) as error:
            raise InvalidToken("malformed or badly signed token") from error
        if not isinstance(claims, dict):
            raise InvalidToken("token payload is not a JSON object")
        _check_times(claims, time.time() if now is None else now, leeway)
        if audience is not None and not _has_audience(claims.get("aud"), audience):
            raise InvalidToken("token is for another audience")
        if issuer is not None and claims.get("iss") != issuer:
            raise InvalidToken("token from another issuer")
        return claims


def _write_new_key(path: Path) -> None:
    key = RSAKey.generate_key(KEY_BITS, auto_kid=True)  # kid: RFC 7638 thumbprint
    data = json.dumps(key.as_dict(private=True)).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process saved its key first: use that
            os.link(temporary, path)  # atomic, and never replaces an existing key
    finally:
        temporary.unlink(missing_ok=True)


def _check_times(claims: dict[str, Any], now: float, leeway: int) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("token has no exp")
    if exp <= now - leeway:
        raise InvalidToken("token expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now + leeway:
        raise InvalidToken("token not yet valid")


def _has_audience(aud: object, audience: str) -> bool:
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud
