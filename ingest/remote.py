"""Post ingest transaction Bundles to a FHIR server's base URL (https://hl7.org/fhir/R4/http.html#transaction-response)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

FHIR_JSON = "application/fhir+json"


@dataclass
class RemoteReport:
    """What the server said: bundles posted/failed, entries created (201) or already there (200)."""

    posted: int = 0
    failed: int = 0
    created: int = 0
    existing: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def post_bundles(
    bundles: Iterable[Mapping[str, Any]],
    base_url: str,
    *,
    client: httpx.Client | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stop_on_error: bool = False,
    progress: Callable[[RemoteReport, Mapping[str, Any]], None] | None = None,
) -> RemoteReport:
    """POST each transaction Bundle to ``base_url`` (the server base, not ``/Bundle``), in order.

    Bundles are sent one by one as they come, so a streaming ingest run can be passed directly.
    ``client`` lets a caller bring its own (authenticated, or mocked) ``httpx.Client``.
    ``progress(report, bundle)`` is called after each bundle, posted or failed (a progress bar).
    """
    report = RemoteReport()
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    send_headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, **(headers or {})}
    url = base_url.rstrip("/") or base_url
    try:
        for n, bundle in enumerate(bundles, 1):
            ok = _post(http, url, bundle, send_headers, report, n)
            if progress is not None:
                progress(report, bundle)
            if not ok and stop_on_error:
                break
    finally:
        if own:
            http.close()
    return report


def _post(
    http: httpx.Client,
    url: str,
    bundle: Mapping[str, Any],
    headers: Mapping[str, str],
    report: RemoteReport,
    n: int,
) -> bool:
    try:
        response = http.post(url, content=orjson.dumps(bundle), headers=headers)
    except httpx.HTTPError as exc:
        report.failed += 1
        report.errors.append(f"bundle {n}: {exc}")
        return False
    if response.status_code >= 400:
        report.failed += 1
        report.errors.append(f"bundle {n}: HTTP {response.status_code}: {response.text[:500]}")
        return False
    report.posted += 1
    _tally(report, response)
    return True


def _tally(report: RemoteReport, response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        return
    for entry in body.get("entry", []) if isinstance(body, dict) else []:
        status = str((entry.get("response") or {}).get("status", ""))
        if status.startswith("201"):
            report.created += 1
        elif status.startswith("200"):
            report.existing += 1
