"""Time-based one-time passwords (https://www.rfc-editor.org/rfc/rfc6238): HMAC-SHA1, 6 digits, 30 s steps.

`verify` accepts the current step and one step either side (clock drift, RFC 6238 section 5.2) and
returns the step that matched, so the caller can refuse that step (and earlier ones) next time:
"the verifier MUST NOT accept the second attempt of the OTP after the successful validation".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from urllib.parse import quote, urlencode

STEP = 30
DIGITS = 6
WINDOW = 1
SECRET_BYTES = 20  # 160 bits, the HMAC-SHA1 output size RFC 4226 recommends


def generate_secret() -> str:
    """A new random shared secret, base32 without padding (as authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a base32 secret; case, spaces, hyphens and missing padding are forgiven."""
    text = re.sub(r"[\s\-]", "", secret).upper().rstrip("=")
    if not text or not re.fullmatch(r"[A-Z2-7]+", text):
        raise ValueError("a TOTP secret is base32 text")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except binascii.Error as error:
        raise ValueError("a TOTP secret is base32 text") from error


def time_step(at: float, step: int = STEP) -> int:
    """T = floor((unix time - T0) / X), with T0 = 0."""
    return int(at // step)


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP value: dynamic truncation of HMAC-SHA1(key, counter), zero-padded."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def generate(key: bytes, at: float, *, digits: int = DIGITS, step: int = STEP) -> str:
    """The TOTP value for time `at` (seconds since the Unix epoch)."""
    return hotp(key, time_step(at, step), digits)


def verify(
    key: bytes,
    code: str,
    at: float,
    *,
    last_used_step: int | None = None,
    digits: int = DIGITS,
    step: int = STEP,
    window: int = WINDOW,
) -> int | None:
    """The time step `code` is valid for (within `window` steps of `at`), or None.

    Steps at or before `last_used_step` are refused, so a code cannot be replayed. All candidates
    are compared in constant time.
    """
    code = code.strip()
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    current = time_step(at, step)
    earliest = max(0, current - window, -1 if last_used_step is None else last_used_step + 1)
    matched = None
    for candidate in range(earliest, current + window + 1):
        if hmac.compare_digest(hotp(key, candidate, digits), code) and matched is None:
            matched = candidate
    return matched


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI that authenticator apps read from a QR code."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": STEP}
    )
    return f"otpauth://totp/{label}?{query}"
