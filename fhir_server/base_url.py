"""The one base URL (https://hl7.org/fhir/R4/http.html#general) that `serve` answers at and tokens are minted for.

An access token's audience is the base URL (SMART: `aud`), so `fhir-server token` must mint for the URL the
running server uses. `serve` decides it (FHIR_BASE_URL, or the address it listens on when that is unset)
and records it in the data folder; `token` takes `--base-url`, else FHIR_BASE_URL, else that record.
"""

from __future__ import annotations

from pathlib import Path

from .settings import Settings

RECORD = "served-base-url"  # in FHIR_DATA_DIR, next to the signing keys


def for_serve(settings: Settings, host: str, port: int) -> str:
    """FHIR_BASE_URL when it is set; else http://<host>:<port> of the address `serve` listens on."""
    if "base_url" in settings.model_fields_set:
        return settings.base
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else host
    return f"http://{shown}:{port}"


def record(settings: Settings, base: str) -> Path:
    """Write the base URL `serve` uses where the operator commands of the same data folder find it."""
    path = Path(settings.data_dir) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(base.rstrip("/") + "\n")
    return path


def for_operator(settings: Settings, given: str | None) -> tuple[str, str]:
    """(base URL, where it came from) for a command that mints tokens or links for the running server."""
    if given:
        return given.rstrip("/"), "--base-url"
    if "base_url" in settings.model_fields_set:
        return settings.base, "FHIR_BASE_URL"
    path = Path(settings.data_dir) / RECORD
    if path.is_file():
        recorded = path.read_text().strip()
        if recorded:
            return recorded, f"recorded by `serve` in {path}"
    return settings.base, "the default (set FHIR_BASE_URL or --base-url)"
