"""Settings from the environment (prefix ``SHIYU_``). Nothing runs at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIYU_", extra="ignore")

    #: SQLAlchemy URL. Default: embedded SQLite file under ./var/.
    database_url: str = ""
    var_dir: Path = Path("var")
    #: Lifetime of bearer tokens, in minutes.
    token_ttl_minutes: int = Field(default=8 * 60, ge=1)
    #: Consecutive failed logins before the account is locked.
    lockout_threshold: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    #: Optional secret key for the audit hash chain (HMAC-SHA256). Empty: plain SHA-256.
    audit_key: str = ""
    #: Largest accepted request body, in bytes.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    default_locale: str = "zh-CN"
    #: Run scheduled jobs (the SLA tick) inside the server process.
    scheduler: bool = True
    sla_tick_seconds: float = Field(default=60.0, ge=1.0)
    #: Argon2 cost; tests lower it for speed, never production.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'shiyu.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
