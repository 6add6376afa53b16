"""trainforge's own settings: where local state lives and how to reach S3.

Read from (lowest to highest precedence) built-in defaults, the YAML file at
``$TRAINFORGE_CONFIG`` (default ``$TRAINFORGE_HOME/config.yaml``) and
``TRAINFORGE_*`` environment variables. S3 credentials and endpoint otherwise
follow boto3's own chain (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...), so MinIO
and any S3 work without trainforge-specific settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class S3Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:9000 for MinIO")
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = Field(default=None, description="with temporary (STS) credentials")
    max_concurrency: int = Field(default=8, ge=1, le=128)
    multipart_threshold_mb: int = Field(default=64, ge=5)
    multipart_chunk_mb: int = Field(default=16, ge=5)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    home: Path = Field(description="local state: jobs, the embedded object store")
    backend: str = Field(default="process", pattern="^(process|container|kubernetes)$")
    s3: S3Settings = Field(default_factory=S3Settings)
    registry: str | None = Field(default=None, description="model registry root URI (default local://trainforge-registry/)")

    @property
    def store_root(self) -> Path:
        """Root of the embedded object store (local://bucket/key)."""
        return self.home / "store"

    @property
    def jobs_root(self) -> Path:
        return self.home / "jobs"


def default_home() -> Path:
    env = os.environ.get("TRAINFORGE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "trainforge"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    home = Path(environ["TRAINFORGE_HOME"]).expanduser() if environ.get("TRAINFORGE_HOME") else default_home()
    path = Path(environ.get("TRAINFORGE_CONFIG") or home / "config.yaml")
    data: dict = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read trainforge config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("home", str(home))
    if environ.get("TRAINFORGE_BACKEND"):
        data["backend"] = environ["TRAINFORGE_BACKEND"]
    if environ.get("TRAINFORGE_REGISTRY"):
        data["registry"] = environ["TRAINFORGE_REGISTRY"]
    if environ.get("TRAINFORGE_S3_ENDPOINT_URL"):
        data.setdefault("s3", {})["endpoint_url"] = environ["TRAINFORGE_S3_ENDPOINT_URL"]
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        from .spec.loading import issues_from

        problems = "; ".join(str(i) for i in issues_from(exc))
        raise ConfigError(f"{path}: invalid trainforge config: {problems}") from None
