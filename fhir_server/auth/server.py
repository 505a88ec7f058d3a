"""The SMART authorization server, wired together (https://hl7.org/fhir/smart-app-launch/STU2.2/).

One object per application holds the store, the signing key (generated on first use into
`settings.data_dir / "keys"` and kept), the client-assertion verifier with its database `jti` store
and JWKS cache, the token issuer and endpoint, the interactive authorization flow and the bearer
token validator. Nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from .. import model
from ..settings import Settings
from ..store.sql import Store
from . import clients, launch
from .authorization_flow import AuthorizationFlow
from .bearer import BearerValidator
from .client_assertion import ClientAssertionVerifier, FetchedJwks, JwksCache, RegisteredClient, max_age
from .client_authentication import Credentials, authenticate
from .clients import Client
from .introspection import introspect
from .jti_store import DatabaseJtiStore
from .keys import SigningKeys
from .revocation import revoke
from .smart_configuration import TOKEN
from .token_endpoint import TokenEndpoint
from .tokens import TokenIssuer

JWKS_FETCH_TIMEOUT = 5.0


def fetch_jwks(url: str) -> FetchedJwks:
    """GET a client's JWKS URL (client-confidential-asymmetric.html#signature-verification)."""
    response = httpx.get(
        url, timeout=JWKS_FETCH_TIMEOUT, follow_redirects=False, headers={"Accept": "application/json"}
    )
    response.raise_for_status()
    jwks = response.json()
    if not isinstance(jwks, dict):
        raise ValueError("a JWKS is a JSON object")
    return FetchedJwks(jwks, max_age(response.headers.get("cache-control")))


class AuthorizationServer:
    """Everything the auth endpoints and the resource server's token check need."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        jwks_fetcher: Callable[[str], FetchedJwks] = fetch_jwks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.base = settings.base
        self._keys: SigningKeys | None = None
        self._keys_lock = threading.Lock()
        types = model.resource_types()
        self.verifier = ClientAssertionVerifier(
            token_url=self.base + TOKEN,
            clients=self._key_registration,
            jti_store=DatabaseJtiStore(store, clock),
            jwks_cache=JwksCache(fetch=jwks_fetcher, clock=clock),
            clock=clock,
        )
        self.issuer = TokenIssuer(
            self.keys, self.base, settings.access_token_seconds, settings.refresh_token_days
        )
        self.token_endpoint = TokenEndpoint(store, self.issuer, self.authenticate_client, types, clock)
        self.flow = AuthorizationFlow(store, self.base, types, clock)
        self.bearer = BearerValidator(store, self.keys, self.base, clock)
        self.clock = clock

    def keys(self) -> SigningKeys:
        """The signing key, loaded (or generated and saved) on first use."""
        if self._keys is None:
            with self._keys_lock:
                if self._keys is None:
                    self._keys = SigningKeys.load_or_create(self.settings.data_dir / "keys")
        return self._keys

    def client(self, client_id: str) -> Client | None:
        with self.store.read() as tx:
            return clients.get(tx.conn, client_id)

    def authenticate_client(self, credentials: Credentials) -> Client:
        """The client a token/introspection/revocation request authenticated as; `OAuthError` if none."""
        return authenticate(credentials, self.client, self.verifier, realm=self.base)

    def introspect(self, token: str) -> dict[str, Any]:
        return introspect(self.bearer, token, clock=self.clock)

    def revoke(self, token: str, client: Client) -> None:
        revoke(self.bearer, token, client.client_id)

    def issue_launch(self, context: launch.LaunchContext) -> str:
        """A new EHR `launch` value for this context."""
        with self.store.write() as tx:
            return launch.issue(tx.conn, context, now=int(self.clock()))

    def _key_registration(self, client_id: str) -> RegisteredClient | None:
        client = self.client(client_id)
        if client is None or client.client_type != "asymmetric":
            return None
        return client.key_registration()
