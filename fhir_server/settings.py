"""Server settings from environment variables (prefix FHIR_), https://docs.pydantic.dev/latest/concepts/pydantic_settings/."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable. The defaults run an embedded server on a SQLite file."""

    model_config = SettingsConfigDict(env_prefix="FHIR_", env_file=None, extra="ignore")

    database_url: str = "sqlite:///./fhir.db"
    base_url: str = "http://localhost:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    redis_url: str | None = None
    data_dir: Path = Path("./fhir-data")
    # Validation
    check_references: bool = True
    # A meta.profile the server does not know (profiles/): "ignore" it, "warn" ($validate reports it)
    # or "error" (the write is refused).
    unknown_profiles: Literal["ignore", "warn", "error"] = "warn"
    # Also run the R4B models on every write, after the StructureDefinition validator (fhir_server/validation.py).
    validate_with_r4b_models: bool = False
    # Database connections per server process: kept open up to db_pool_size, then up to db_max_overflow
    # more that are closed after use (a new connection costs a PostgreSQL backend start, so the pool
    # should cover the usual number of concurrent requests).
    db_pool_size: int = 16
    db_max_overflow: int = 16
    # Read replicas (docs/operations.md "Read replicas"): comma-separated PostgreSQL URLs of streaming
    # replicas of database_url. FHIR reads and searches go there; a caller that wrote reads the
    # primary for replica_pin_seconds (keep it above replica_max_lag_seconds + replica_check_seconds);
    # a replica down or lagging more than replica_max_lag_seconds is skipped (reads on the primary).
    database_read_urls: str = ""
    replica_pin_seconds: float = 10.0
    replica_max_lag_seconds: float = 5.0
    replica_check_seconds: float = 1.0
    max_body_bytes: int = 32 * 1024 * 1024
    # Search paging
    default_count: int = 20
    max_count: int = 1000
    # Security: serving PHI without a token needs this explicit, loudly logged development switch.
    allow_anonymous: bool = False
    # Audit trail (docs/audit.md): an AuditEvent for every access and change, written in batches
    # off the request path; AuditEvents older than audit_retention_days are removed (0: kept forever).
    audit: bool = True
    audit_retention_days: int = 6 * 366
    audit_queue_size: int = 10_000  # requests waiting to be recorded before new ones wait for room
    log_level: str = "info"
    # Asynchronous jobs and Bulk Data (https://hl7.org/fhir/uv/bulkdata/STU2/export.html)
    job_queue: str = "fhir-jobs"  # the Celery queue (used when redis_url is set)
    job_threads: int = 2  # in-process executor threads, or Celery worker concurrency
    job_lease_seconds: float = 30.0  # a worker silent this long is presumed dead; its job is taken over
    job_max_attempts: int = 3  # runs of one job before it is failed with a reason
    bulk_file_max_resources: int = 100_000  # resources per output file before a new file is started
    bulk_file_ttl_seconds: int = 24 * 3600  # completed output files are deleted after this
    bulk_retry_after_seconds: int = 2  # Retry-After advised to status pollers
    bulk_min_poll_seconds: float = 1.0  # polls closer together than this get a 429
    bulk_max_active_per_client: int = 2  # concurrent exports and imports per client before a 429
    bulk_checkpoint_rows: int = 5000  # resources between checkpoints (resume points) of a running job
    bulk_snapshot_settle_seconds: float = 1.0  # wait for writes stamped before transactionTime to commit
    bulk_import_dir: Path | None = None  # $import may read local files under this directory only
    bulk_import_max_upload_bytes: int = 1024**3  # an ndjson body POSTed to $import
    ingest_max_upload_bytes: int = 4 * 1024**3  # a file POSTed to $ingest (Apple Health exports are large)
    # chunks of one ingest in flight at once on PostgreSQL (operations/ingest_bulk.py "Pipelined"):
    # with 2 one chunk is prepared while the other is written, ~10-20% more records/s than 1 for
    # ~20 MiB more memory (bench/README.md "Idempotent writes")
    ingest_pipeline: int = 2
    # SMART authorization server (fhir_server/auth): token lifetimes, CORS for browser apps, admin API.
    access_token_seconds: int = 3600
    refresh_token_days: int = 90  # offline_access; online_access lasts as long as the login (8 hours)
    cors_origins: list[str] = ["*"]  # FHIR_CORS_ORIGINS='["https://app.example.org"]'
    admin_secret: str | None = None  # a bearer secret for /admin/*, besides system/*.cruds tokens
    # Patient self-registration at /auth/register (docs/smart-on-fhir.md "Accounts"): "off", "open"
    # (anyone), or "invite" (with a code from `fhir-server invites add` or POST /admin/invites).
    self_registration: Literal["off", "open", "invite"] = "off"
    # Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For names the client, for login throttling;
    # empty: the socket peer is the client. FHIR_TRUSTED_PROXIES='["10.0.0.0/8"]'
    trusted_proxies: list[str] = []
    # Operations (docs/operations.md): /metrics answers only a bearer of this secret (unset: /metrics is
    # off, 404); logs are JSON lines with a request id ("json") or plain text ("text").
    metrics_token: str | None = None
    log_format: str = "json"
    # Subscriptions (docs/subscriptions.md): which rest-hook endpoints may be called (http(s) only;
    # private networks and loopback refused unless allowed), timeouts, retries with exponential
    # backoff, and the failures in a row after which a Subscription's status becomes error.
    subscription_allow_private: bool = False
    subscription_allow_loopback: bool = False
    subscription_timeout_seconds: float = 10.0
    subscription_retry_base_seconds: float = 1.0
    # a receiver down for a few minutes stays active (10 failures take about 4 min with these), and
    # once it is back the next try comes within a minute
    subscription_retry_max_seconds: float = 60.0
    subscription_max_failures: int = 10
    subscription_lease_seconds: float = 60.0  # a deliverer silent this long is presumed dead
    subscription_delivery_threads: int = 4
    subscription_keep_seconds: float = 24 * 3600.0  # sent notifications kept (Server-Sent Events resume)

    @property
    def read_urls(self) -> list[str]:
        """`database_read_urls` split at commas, blanks dropped."""
        return [url.strip() for url in self.database_read_urls.split(",") if url.strip()]

    @cached_property
    def base(self) -> str:
        """Base URL without a trailing slash."""
        return self.base_url.rstrip("/")

    @cached_property
    def base_path(self) -> str:
        """The path of the base URL ("" or e.g. "/fhir"): the server answers under it."""
        from urllib.parse import urlsplit

        return urlsplit(self.base).path.rstrip("/")
