"""Service settings from the environment (prefix TRIAGE_) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=32, description="uvicorn worker processes")
    data_dir: Path = Field(ROOT / "data", description="Taxonomy, responsibility list, gazetteer, rules")
    model_dir: Path = Field(ROOT / "models" / "default", description="Active model (manifest.json inside)")
    database_url: str = Field(f"sqlite:///{ROOT / 'var' / 'triage.db'}", description="SQLAlchemy URL")
    db_auto_upgrade: Literal["sqlite", "always", "never"] = Field(
        "sqlite", description="Upgrade the database schema to head on first use: for SQLite only (default), always, never"
    )
    db_pool_size: int = Field(
        8, ge=1, le=100,
        description="PostgreSQL: connections kept open per worker (SQLAlchemy pool_size). A triage request holds one "
                    "at a time; 8 + db_max_overflow covers the request threads a worker runs at once on 2 cores",
    )
    db_max_overflow: int = Field(
        8, ge=0, le=100, description="PostgreSQL: extra connections per worker under bursts (workers × (size + overflow) "
                                     "must stay below the server's max_connections, 100 by default)",
    )
    db_pool_pre_ping: bool = Field(
        True,
        description="PostgreSQL: test each connection with a round trip before every check-out (a triage request checks "
                    "out ~6, ~0.8 ms in all), so a database restart fails no request. Off saves that time; the first "
                    "request that meets a connection broken by a restart then fails",
    )
    pii_key: SecretStr | None = Field(None, description="Secret for keyed petitioner hashes (HMAC); default: pii_key_file")
    pii_key_file: Path = Field(ROOT / "var" / "pii.key", description="Secret file, created (mode 0600) when missing")
    onnx_threads: int = Field(
        1, ge=1, le=16, description="intra-op threads per onnxruntime session (1 is fastest with one worker per core)"
    )
    model_poll_seconds: float = Field(
        5.0, ge=0, le=3600,
        description="Each worker checks the store's active model version this often and loads a newly activated one "
                    "in the background (0: never; the model of model_dir is served until restart)",
    )
    ner: bool = Field(True, description="Use a word/NER tagger in entity extraction (patterns + gazetteer always run)")
    ner_engine: Literal["fast", "lac"] = Field(
        "lac", description="Word tagger: lac (the LAC ONNX model, the default: more accurate) or fast (distilled from LAC, "
                      "numpy, ~1.9x faster extraction, person/org F1 -0.02/-0.04; retrain the linker with the same engine)")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = Field(True, description="One JSON object per log line")
    max_body_bytes: int = Field(256_000, ge=1_024, description="Largest accepted request body")
    rate_limit_per_second: float = Field(
        50.0, gt=0, description="Requests per second per API key (token bucket per worker, divided by TRIAGE_WORKERS)"
    )
    rate_limit_burst: float = Field(100.0, ge=1, description="Token bucket size per API key (divided by TRIAGE_WORKERS)")
    auth_cache_seconds: float = Field(
        2.0, ge=0, le=60,
        description="Each worker remembers a verified API key this long: a revoked key is refused within this many "
                    "seconds (0: check every request against the store)",
    )
    link_index_dir: Path | None = Field(
        ROOT / "var" / "link_index",
        description="Where the link index's vector base (IVF, above 50k stored cases) is persisted and memory-mapped "
                    "by every worker (built once, then opened in milliseconds); empty: each worker builds it in memory",
    )
    link_nprobe: int | None = Field(
        None, ge=1, le=4096,
        description="IVF lists probed per vector query of the link index (empty: the base's default, 512 for the "
                    "default fast-scan base; see triage.store.index.DEFAULT_NPROBE)",
    )

    @field_validator("link_index_dir", "link_nprobe", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v
