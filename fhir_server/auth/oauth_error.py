"""OAuth 2.0 error responses (https://www.rfc-editor.org/rfc/rfc6749#section-5.2).

Token, introspection and revocation endpoints answer errors as JSON `{"error", "error_description"}`
with status 400, or 401 for `invalid_client` (with `WWW-Authenticate` when the client tried HTTP
Basic). Descriptions never contain secrets or PHI.
"""

from __future__ import annotations

from typing import Any

ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "unsupported_token_type",
    }
)


class OAuthError(Exception):
    """An RFC 6749 error; `status` 401 for client authentication failures, else 400."""

    def __init__(self, error: str, description: str, *, basic_realm: str | None = None) -> None:
        if error not in ERRORS:
            raise ValueError(f"not an OAuth error code: {error}")
        super().__init__(description)
        self.error = error
        self.description = description
        self.basic_realm = basic_realm  # the client tried HTTP Basic: challenge it in the 401

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401 and self.basic_realm is not None:
            return {"WWW-Authenticate": f'Basic realm="{self.basic_realm}"'}
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}
