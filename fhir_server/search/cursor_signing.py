"""Signed paging cursors: a `_cursor` (https://hl7.org/fhir/R4/http.html#paging) carries an HMAC-SHA256 tag.

The server only decodes cursors it issued, so a forged one (deeply nested JSON, say) is a 400 before
anything is parsed. The key is kept in `data_dir/keys/paging-key` (mode 0600; several processes
starting at once end up with the same key), so every worker of one server accepts the others'
cursors. Callers without settings (tests, tools) use a per-process key.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

PROCESS_KEY = secrets.token_bytes(32)
KEY_FILE = "paging-key"
_TAG_BYTES = 16


def sign(payload: str, key: bytes) -> str:
    """`payload.tag`: the payload (base64url, no dots) and its truncated HMAC."""
    return f"{payload}.{_tag(payload, key)}"


def verify(text: str, key: bytes) -> str | None:
    """The payload of a cursor signed with `key`, or None when the tag is missing or wrong."""
    payload, dot, tag = text.rpartition(".")
    if not dot or not hmac.compare_digest(tag.encode(), _tag(payload, key).encode()):
        return None
    return payload


def _tag(payload: str, key: bytes) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@functools.lru_cache(maxsize=8)
def key_for(data_dir: Path) -> bytes:
    """The server's paging key in `data_dir/keys`, generated there on first use."""
    directory = Path(data_dir) / "keys"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE
    if not path.exists():
        temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{time.monotonic_ns()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another process saved its key first: use that
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())
