"""Tables of the SMART authorization server (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html).

Registered clients, users, pending authorization requests, authorization codes, refresh and access
tokens, EHR launch contexts, used client-assertion `jti`s, failed logins, registration invites,
password reset links and the self-service pages' sessions. They live on the one shared MetaData.
Secrets (client secrets, codes, refresh tokens, launch values, request ids, invite codes, reset
links, session cookies) are stored only as SHA-256 digests; passwords as Argon2id hashes. Times
are integer seconds since the Unix epoch. `grant_id` ties every token that came from one
authorization code (or one client_credentials request) together, so they can be revoked together.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from ..store.tables import PK, metadata

DIGEST = String(64)  # hex SHA-256

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("client_type", String(16), nullable=False),  # public | symmetric | asymmetric
    Column("name", String(255), nullable=False, default=""),
    Column("secret_hash", DIGEST, nullable=True),  # symmetric: SHA-256 of the generated secret
    Column("jwks", Text, nullable=True),  # asymmetric: the registered JWK Set (JSON)
    Column("jwks_uri", String(1024), nullable=True),  # asymmetric: the registered JWKS URL
    Column("redirect_uris", Text, nullable=False, default="[]"),  # JSON array of exact URIs
    Column("scope", Text, nullable=False, default=""),  # pre-authorised scopes (Backend Services)
    Column("created_at", BigInteger, nullable=False),
)

auth_user = Table(
    "auth_user",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),  # Argon2id PHC string
    Column("totp_secret", String(64), nullable=True),  # base32, when two-factor login is on
    Column("totp_last_step", BigInteger, nullable=True),  # the last accepted TOTP time step
    Column("fhir_user", String(128), nullable=True),  # "Patient/123", "Practitioner/9"
    Column("created_at", BigInteger, nullable=False),
)

# An authorization request between /auth/authorize and the consent decision (login, patient picker).
authorization_request = Table(
    "authorization_request",
    metadata,
    Column("id_hash", DIGEST, primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("code_challenge", String(64), nullable=False),
    Column("nonce", Text, nullable=True),
    Column("context", Text, nullable=False, default="{}"),  # launch context (JSON), from an EHR launch
    Column("ehr_launch", Boolean, nullable=False, default=False),
    Column("session_hash", DIGEST, nullable=True),  # the browser session that logged in
    Column("user_pk", BigInteger, nullable=True),
    Column("auth_time", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_authorization_request_expires", "expires_at"),
)

authorization_code = Table(
    "authorization_code",
    metadata,
    Column("code_hash", DIGEST, primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("user_pk", BigInteger, nullable=True),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(64), nullable=False),
    Column("nonce", Text, nullable=True),
    Column("context", Text, nullable=False, default="{}"),
    Column("auth_time", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),  # single use: set by the first exchange
    Index("ix_authorization_code_expires", "expires_at"),
)

refresh_token = Table(
    "refresh_token",
    metadata,
    Column("token_hash", DIGEST, primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("user_pk", BigInteger, nullable=True),
    Column("scope", Text, nullable=False),  # the scopes of the grant (a refresh may narrow them)
    Column("context", Text, nullable=False, default="{}"),
    Column("access", String(8), nullable=False),  # offline | online
    Column("auth_time", BigInteger, nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Index("ix_refresh_token_grant", "grant_id"),
)

access_token = Table(
    "access_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("context", Text, nullable=False, default="{}"),  # launch context, for introspection
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Index("ix_access_token_grant", "grant_id"),
    Index("ix_access_token_expires", "expires_at"),
)

# Opaque `launch` values the server issued for EHR launches, with the context they stand for.
launch_context = Table(
    "launch_context",
    metadata,
    Column("launch_hash", DIGEST, primary_key=True),
    Column("context", Text, nullable=False),  # {"patient", "encounter", "fhirContext", "intent", ...}
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# `jti`s of accepted client assertions, so a replay is refused by every worker process.
used_jti = Table(
    "used_jti",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_used_jti_expires", "expires_at"),
)

# Consecutive failed logins per (user, client address), per user and per address (digests of the
# keys), for login throttling with backoff (fhir_server/auth/login_throttle.py).
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key_hash", DIGEST, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", BigInteger, nullable=False),
    Index("ix_login_throttle_last_failure", "last_failure"),
)

# Invite codes for patient self-registration (fhir_server/auth/invitations.py): single use, expiring,
# stored as digests; `used_by` is the user the code created.
registration_invite = Table(
    "registration_invite",
    metadata,
    Column("code_hash", DIGEST, primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Column("used_by", BigInteger, nullable=True),
    Index("ix_registration_invite_expires", "expires_at"),
)

# Browser sessions of the self-service pages (fhir_server/auth/account_session.py): the cookie's
# digest, the digest of the form token that must come with every POST (CSRF), the signed-in user
# (none on the registration and sign-in pages) and a TOTP secret waiting for its first code.
account_session = Table(
    "account_session",
    metadata,
    Column("session_hash", DIGEST, primary_key=True),
    Column("csrf_hash", DIGEST, nullable=False),
    Column("user_pk", BigInteger, nullable=True),
    Column("pending_totp", String(64), nullable=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_account_session_expires", "expires_at"),
    Index("ix_account_session_user", "user_pk"),
)

# Operator-issued password reset links (fhir_server/auth/password_reset.py): single use, expiring,
# the link's token stored as a digest; one open link per user (a new one replaces it).
password_reset = Table(
    "password_reset",
    metadata,
    Column("token_hash", DIGEST, primary_key=True),
    Column("user_pk", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Index("ix_password_reset_expires", "expires_at"),
    Index("ix_password_reset_user", "user_pk"),
)
