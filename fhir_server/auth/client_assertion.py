"""`private_key_jwt` client authentication (https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html#signature-verification).

Used by SMART Backend Services and by confidential asymmetric app clients. Stricter than authlib's
defaults: RS384 and ES384 accepted (RS256/ES256 etc. only when configured; `none` and HS* never),
`exp` required and at most five minutes ahead, `jti` required and never accepted twice, `iss == sub ==
client_id`, `aud` the token URL, keys resolved by `kid` (and `kty`) in the client's registered JWKS or
JWKS URL, a `jku` header only when it is that registered URL. Every failure is `InvalidClient`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REQUIRED_ALGORITHMS = frozenset({"RS384", "ES384"})
# Asymmetric algorithms a deployment may add ("clients and servers MAY support and use additional
# algorithms"); anything else (none, HS*) can never be enabled.
OPTIONAL_ALGORITHMS = frozenset({"RS256", "RS512", "ES256", "ES512", "PS256", "PS384", "PS512"})
MAX_LIFETIME = 300  # seconds: exp "SHALL be no more than five minutes in the future"
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
_MIN_RSA_BITS = 2048


class InvalidClient(Exception):
    """Client authentication failed: OAuth error `invalid_client` (RFC 6749 section 5.2)."""

    error = "invalid_client"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class JtiStore(Protocol):
    """Remembers the `jti`s seen per client until they expire."""

    def remember(self, client_id: str, jti: str, exp: int) -> bool:
        """Record `jti`; False when it was already seen for this client."""
        ...


class MemoryJtiStore:
    """A `JtiStore` in process memory, for one server process (a shared one belongs in the database).

    A jti is kept until five minutes after its assertion's exp; by then the assertion is refused as
    expired anyway.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}
        self._next_prune = 0.0
        self._lock = threading.Lock()

    def remember(self, client_id: str, jti: str, exp: int) -> bool:
        now = self._clock()
        with self._lock:
            if now >= self._next_prune:
                self._seen = {k: e for k, e in self._seen.items() if e + MAX_LIFETIME >= now}
                self._next_prune = now + 60
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = exp
            return True


@dataclass(frozen=True)
class RegisteredClient:
    """What registration recorded about a `private_key_jwt` client: a JWKS URL and/or a JWKS."""

    client_id: str
    jwks_uri: str | None = None
    jwks: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FetchedJwks:
    """A JWKS fetched from a URL, and for how long it may be cached (from its Cache-Control)."""

    jwks: Mapping[str, Any]
    max_age: float = 0.0


JwksFetcher = Callable[[str], FetchedJwks]
ClientLookup = Callable[[str], RegisteredClient | None]


def max_age(cache_control: str | None) -> float:
    """Seconds a response may be cached per its Cache-Control header: 0 for none, no-store, no-cache."""
    if not cache_control:
        return 0.0
    seconds: float = 0.0
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and re.fullmatch(r"\d{1,10}", value.strip().strip('"')):
            seconds = float(value.strip().strip('"'))
    return seconds


@dataclass
class JwksCache:
    """Client JWK Sets fetched from their URLs, kept no longer than their Cache-Control allows.

    `get(url, fresh=True)` refetches a cached set (the client may have rotated its keys), but at
    most once per `refresh_interval` seconds, so unknown `kid`s cannot make us hammer the URL.
    """

    fetch: JwksFetcher
    clock: Callable[[], float] = time.time
    refresh_interval: float = 10.0
    _entries: dict[str, tuple[float, float, Mapping[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, url: str, *, fresh: bool = False) -> Mapping[str, Any]:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            fetched_at, expires_at, jwks = entry
            if now < expires_at and (not fresh or now < fetched_at + self.refresh_interval):
                return jwks
        try:
            fetched = self.fetch(url)
        except Exception as error:  # any network or parse failure of the client's JWKS
            raise InvalidClient("the client's JWKS URL could not be fetched") from error
        with self._lock:
            if fetched.max_age > 0:
                self._entries[url] = (now, now + fetched.max_age, fetched.jwks)
            else:
                self._entries.pop(url, None)
        return fetched.jwks


@dataclass(frozen=True)
class VerifiedAssertion:
    """An accepted client assertion."""

    client_id: str
    jti: str
    exp: int
    kid: str
    alg: str


@dataclass
class ClientAssertionVerifier:
    """Validates client assertions posted to `token_url`."""

    token_url: str
    clients: ClientLookup
    jti_store: JtiStore
    jwks_cache: JwksCache | None = None
    algorithms: frozenset[str] = REQUIRED_ALGORITHMS
    leeway: int = 10  # seconds of clock skew tolerated around exp / nbf / iat
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        unsupported = self.algorithms - REQUIRED_ALGORITHMS - OPTIONAL_ALGORITHMS
        if unsupported or not self.algorithms:
            raise ValueError(f"only asymmetric algorithms may be enabled, not {sorted(unsupported)}")

    def verify(
        self, assertion: str, *, assertion_type: str | None = ASSERTION_TYPE, client_id: str | None = None
    ) -> VerifiedAssertion:
        """Authenticate a client by its assertion. `client_id`: the form parameter, when sent."""
        if assertion_type != ASSERTION_TYPE:
            raise InvalidClient("client_assertion_type must be " + ASSERTION_TYPE)
        header, unverified = _peek(assertion)
        alg, kid = self._check_header(header)
        client = self._client(unverified, client_id)
        key = self._key(client, header, alg, kid)
        claims = _verified_claims(assertion, key, alg)
        exp = self._check_claims(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClient("assertion has no jti")
        if not self.jti_store.remember(client.client_id, jti, exp):
            raise InvalidClient("assertion jti was already used")
        return VerifiedAssertion(client.client_id, jti, exp, kid, alg)

    def _check_header(self, header: Mapping[str, Any]) -> tuple[str, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidClient(f"assertion algorithm must be one of {sorted(self.algorithms)}")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise InvalidClient("assertion typ must be JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidClient("assertion header has no kid")
        if "crit" in header or "jwk" in header or "x5u" in header:
            raise InvalidClient("assertion header names keys or extensions we do not accept")
        return alg, kid

    def _client(self, claims: Mapping[str, Any], client_id: str | None) -> RegisteredClient:
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or not iss or iss != sub:
            raise InvalidClient("assertion iss and sub must both be the client_id")
        if client_id is not None and client_id != iss:
            raise InvalidClient("client_id does not match the assertion's iss")
        client = self.clients(iss)
        if client is None or client.client_id != iss:
            raise InvalidClient("unknown client")
        return client

    def _key(self, client: RegisteredClient, header: Mapping[str, Any], alg: str, kid: str) -> RSAKey | ECKey:
        jku = header.get("jku")
        if jku is not None:
            if not isinstance(jku, str) or client.jwks_uri is None or jku != client.jwks_uri:
                raise InvalidClient("jku is not the client's registered JWKS URL")
            return self._key_from_url(jku, alg, kid)
        if client.jwks is not None:
            key = _candidate(client.jwks, alg, kid)
            if key is not None:
                return key
        if client.jwks_uri is not None:
            return self._key_from_url(client.jwks_uri, alg, kid)
        raise InvalidClient("no key with this kid is registered for the client")

    def _key_from_url(self, url: str, alg: str, kid: str) -> RSAKey | ECKey:
        if self.jwks_cache is None:
            raise InvalidClient("JWKS URLs are not supported here")
        key = _candidate(self.jwks_cache.get(url), alg, kid)
        if key is None:  # maybe the client rotated its keys since we cached the set
            key = _candidate(self.jwks_cache.get(url, fresh=True), alg, kid)
        if key is None:
            raise InvalidClient("no key with this kid in the client's JWKS")
        return key

    def _check_claims(self, claims: Mapping[str, Any]) -> int:
        now = self.clock()
        aud = claims.get("aud")
        if not (aud == self.token_url or (isinstance(aud, list) and self.token_url in aud)):
            raise InvalidClient("assertion aud must be the token URL")
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise InvalidClient("assertion has no integer exp")
        if exp < now - self.leeway:
            raise InvalidClient("assertion expired")
        if exp > now + MAX_LIFETIME + self.leeway:
            raise InvalidClient("assertion exp is more than five minutes ahead")
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and (not _is_number(value) or value > now + self.leeway):
                raise InvalidClient(f"assertion {name} is in the future")
        return exp


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _peek(assertion: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Header and claims before the signature is checked (to find the client and its key)."""
    try:
        parts = jws.extract_compact(assertion.encode("ascii"))
        header = parts.headers()
        claims = json.loads(parts.payload or b"")
    except (JoseError, ValueError, UnicodeError) as error:
        raise InvalidClient("client_assertion is not a signed JWT") from error
    if not isinstance(claims, dict):
        raise InvalidClient("client_assertion payload is not a JSON object")
    return header, claims


def _candidate(jwks: Mapping[str, Any], alg: str, kid: str) -> RSAKey | ECKey | None:
    """The single key with this kid and a kty that fits alg; more than one match is an error."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise InvalidClient("the client's JWKS has no keys array")
    kty = _KTY[alg[:2]]
    matches = [
        k
        for k in keys
        if isinstance(k, Mapping)
        and k.get("kid") == kid
        and k.get("kty") == kty
        and k.get("alg") in (None, alg)
    ]
    if len(matches) > 1:
        raise InvalidClient("more than one key in the client's JWKS has this kid")
    if not matches:
        return None
    public = {
        name: value for name, value in matches[0].items() if name not in ("d", "p", "q", "dp", "dq", "qi")
    }
    if kty == "RSA" and _modulus_bits(public.get("n")) < _MIN_RSA_BITS:
        raise InvalidClient("the client's RSA key is shorter than 2048 bits")
    try:
        return RSAKey.import_key(public) if kty == "RSA" else ECKey.import_key(public)
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidClient("the client's key is not a valid public JWK") from error


def _modulus_bits(n: object) -> int:
    """Bit length of a JWK's base64url modulus (0 when it is not one)."""
    if not isinstance(n, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", n):
        return 0
    raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    return int.from_bytes(raw, "big").bit_length()


def _verified_claims(assertion: str, key: RSAKey | ECKey, alg: str) -> Mapping[str, Any]:
    try:
        verified = jws.deserialize_compact(assertion, key, algorithms=[alg])
        claims = json.loads(verified.payload or b"")
    except (JoseError, ValueError) as error:
        raise InvalidClient("assertion signature is not valid") from error
    if not isinstance(claims, dict):
        raise InvalidClient("client_assertion payload is not a JSON object")
    return claims
