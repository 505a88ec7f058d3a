"""Client authentication at the token, introspection and revocation endpoints (https://hl7.org/fhir/smart-app-launch/STU2.2/client-authentication.html).

* `asymmetric` clients: `private_key_jwt` only (`client_assertion_type` + `client_assertion`),
  verified by `ClientAssertionVerifier`; a client secret instead is `invalid_client`.
* `symmetric` clients: the generated secret by HTTP Basic (`client_secret_basic`, RFC 6749 section
  2.3.1, form-urlencoded id and secret) or in the form (`client_secret_post`).
* `public` clients: only `client_id`, and no credentials of any kind.

"The client MUST NOT use more than one authentication method in each request": several is
`invalid_request`. Every failure to authenticate is `invalid_client` (401).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .client_assertion import ClientAssertionVerifier, InvalidClient
from .clients import Client
from .oauth_error import OAuthError


@dataclass(frozen=True)
class Credentials:
    """What a request presented to identify its client."""

    client_id: str | None = None  # the form parameter
    basic: tuple[str, str] | None = None  # HTTP Basic (id, secret)
    secret: str | None = None  # client_secret form parameter
    assertion: str | None = None
    assertion_type: str | None = None

    @classmethod
    def from_request(cls, form: Mapping[str, str], authorization: str | None) -> Credentials:
        basic = None
        if authorization and authorization[:6].lower() == "basic ":
            basic = _basic(authorization[6:].strip())
        return cls(
            client_id=form.get("client_id") or None,
            basic=basic,
            secret=form.get("client_secret"),
            assertion=form.get("client_assertion"),
            assertion_type=form.get("client_assertion_type"),
        )

    @property
    def presented(self) -> bool:
        return bool(self.client_id or self.basic or self.secret is not None or self.assertion is not None)


def authenticate(
    credentials: Credentials,
    lookup: Callable[[str], Client | None],
    verifier: ClientAssertionVerifier,
    *,
    realm: str,
) -> Client:
    """The authenticated client, or `OAuthError` (`invalid_client`, or `invalid_request`)."""
    methods = [m for m in (credentials.basic, credentials.secret, credentials.assertion) if m is not None]
    if len(methods) > 1:
        raise OAuthError("invalid_request", "use exactly one client authentication method")
    basic_realm = realm if credentials.basic is not None else None

    def refuse(reason: str) -> OAuthError:
        return OAuthError("invalid_client", reason, basic_realm=basic_realm)

    if credentials.assertion is not None or credentials.assertion_type is not None:
        try:
            verified = verifier.verify(
                credentials.assertion or "",
                assertion_type=credentials.assertion_type,
                client_id=credentials.client_id,
            )
        except InvalidClient as error:
            raise refuse(error.reason) from None
        client = lookup(verified.client_id)
        if client is None or client.client_type != "asymmetric":
            raise refuse("client authentication failed")
        return client
    secret: str | None
    if credentials.basic is not None:
        client_id, secret = credentials.basic
        if credentials.client_id not in (None, client_id):
            raise refuse("client_id does not match the authenticated client")
    else:
        client_id, secret = credentials.client_id or "", credentials.secret
    client = lookup(client_id) if client_id else None
    if client is None:
        raise refuse("client authentication failed")
    if client.client_type == "asymmetric":
        raise refuse("this client authenticates with a signed JWT (private_key_jwt)")
    if client.client_type == "symmetric":
        if secret is None or not client.secret_matches(secret):
            raise refuse("client authentication failed")
        return client
    if secret is not None:
        raise refuse("a public client has no secret")
    return client


def _basic(encoded: str) -> tuple[str, str]:
    """(client_id, secret) of an HTTP Basic credential; ("", "") when malformed (fails later)."""
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, colon, secret = text.partition(":")
    if not colon:
        return "", ""
    return unquote_plus(client_id), unquote_plus(secret)
