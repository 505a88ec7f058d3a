"""Server settings from environment variables (prefix FHIR_), https://docs.pydantic.dev/latest/concepts/pydantic_settings/."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

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
    max_body_bytes: int = 32 * 1024 * 1024
    # Search paging
    default_count: int = 20
    max_count: int = 1000
    # Security: serving PHI without a token needs this explicit, loudly logged development switch.
    allow_anonymous: bool = False
    log_level: str = "info"

    @cached_property
    def base(self) -> str:
        """Base URL without a trailing slash."""
        return self.base_url.rstrip("/")
