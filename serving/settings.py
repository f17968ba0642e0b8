"""Service settings from the environment (prefix TRIAGE_) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    onnx_threads: int = Field(
        1, ge=1, le=16, description="intra-op threads per onnxruntime session (1 is fastest with one worker per core)"
    )
    ner: bool = Field(True, description="Use the LAC NER model in entity extraction (patterns + gazetteer always run)")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = Field(True, description="One JSON object per log line")
    max_body_bytes: int = Field(256_000, ge=1_024, description="Largest accepted request body")
