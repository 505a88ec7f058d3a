"""Helpers that drive the SMART authorization server like an app and a user would (register, log in, consent, exchange)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from argon2 import PasswordHasher, Type
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from fhir_server.auth import clients, launch, passwords, users
from fhir_server.store.sql import Store
from tests import factories

BASE = "http://testserver"
TOKEN_URL = BASE + "/auth/token"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery staple"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def register(store: Store, client_id: str = "app", client_type: str = "public", **kw: Any) -> str | None:
    if client_type != "asymmetric":
        kw.setdefault("redirect_uris", [REDIRECT])
    with store.write() as tx:
        _, secret = clients.register(tx.conn, client_id, client_type, **kw)
    return secret


def add_user(
    store: Store, username: str, fhir_user: str | None = None, *, with_totp: bool = False
) -> str | None:
    """A user whose Argon2id hash has test-cheap parameters (verification reads them from the hash)."""
    with mock.patch.object(passwords, "hash_password", _CHEAP_HASHER.hash), store.write() as tx:
        _, secret = users.add(tx.conn, username, PASSWORD, fhir_user=fhir_user, with_totp=with_totp)
    return secret


def add_patient(store: Store, patient_id: str, family: str = "Smith", given: str = "Anna") -> None:
    with store.write() as tx:
        tx.create(factories.patient(family, given), patient_id)


def add_observation(store: Store, patient_id: str, category: str = "vital-signs") -> str:
    obs = factories.observation(patient_id)
    obs["category"][0]["coding"][0]["code"] = category
    with store.write() as tx:
        return tx.create(obs).res_id


def issue_launch(store: Store, **context: Any) -> str:
    with store.write() as tx:
        return launch.issue(tx.conn, launch.LaunchContext(**context))


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field in page"
    return html.unescape(match.group(1))


def offered_scopes(page: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(r'name="scope" value="([^"]*)"', page)]


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Authorization:
    """An app's authorization request in progress."""

    client_id: str = "app"
    scope: str = "launch/patient patient/*.rs openid fhirUser offline_access"
    redirect_uri: str = REDIRECT
    state: str = "state-123"
    aud: str = BASE
    launch: str | None = None

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce_pair()

    def params(self, **override: str | None) -> dict[str, str]:
        out: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "aud": self.aud,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "launch": self.launch,
        }
        out.update(override)
        return {k: v for k, v in out.items() if v is not None}

    def url(self, **override: str | None) -> str:
        return "/auth/authorize?" + urlencode(self.params(**override))


def log_in(
    http: httpx.Client | Any, page: str, username: str, password: str = PASSWORD, code: str = ""
) -> Any:
    form = {"request": hidden(page, "request"), "username": username, "password": password, "totp": code}
    return http.post("/auth/login", data=form)


def consent(http: Any, page: str, *, approve: bool = True, untick: tuple[str, ...] = ()) -> Any:
    scopes = [s for s in offered_scopes(page) if s not in untick]
    form = {"request": hidden(page, "request"), "decision": "approve" if approve else "deny", "scope": scopes}
    return http.post("/auth/consent", data=form)


def pick_patient(http: Any, page: str, patient_id: str) -> Any:
    return http.post(
        "/auth/patient", data={"request": hidden(page, "request"), "action": "select", "patient": patient_id}
    )


def authorize(
    http: Any,
    request: Authorization,
    username: str,
    *,
    patient: str | None = None,
    untick: tuple[str, ...] = (),
) -> dict[str, str]:
    """Run the browser part (authorize, login, picker, consent); return the redirect's parameters."""
    page = http.get(request.url())
    assert page.status_code == 200, page.text
    page = log_in(http, page.text, username)
    assert page.status_code == 200, page.text
    if patient is not None:
        page = pick_patient(http, page.text, patient)
        assert page.status_code == 200, page.text
    done = consent(http, page.text, untick=untick)
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(request.redirect_uri)
    return query(done.headers["location"])


def exchange(http: Any, request: Authorization, code: str, **override: str | None) -> Any:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "client_id": request.client_id,
        "code_verifier": request.verifier,
    }
    form.update(override)
    return http.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- Backend Services ----
def rsa_key(kid: str = "rsa-1") -> RSAKey:
    return RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), {"kid": kid})


def ec_key(kid: str = "ec-1") -> ECKey:
    return ECKey.import_key(ec.generate_private_key(ec.SECP384R1()), {"kid": kid})


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(
    key: RSAKey | ECKey,
    alg: str,
    client_id: str,
    *,
    header: dict[str, Any] | None = None,
    **claims_: Any,
) -> str:
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
        **claims_,
    }
    head = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
    return jws.serialize_compact(head, json.dumps(body), key, algorithms=[alg])


def client_credentials(http: Any, signed: str, scope: str = "system/*.rs", **extra: str) -> Any:
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
        **extra,
    }
    return http.post("/auth/token", data=form)
