"""The model registry: immutable model versions with lineage, and aliases
(``production``, ``candidate``) moved by conditional writes, all in the object
store (no server).

    registry = trainforge.ModelRegistry("s3://models/registry/")
    version = trainforge.register_model("digits-8f2a1c", "digits")
    registry.promote("digits", version.version, "production")
    registry.download("digits@production", "model/")
"""

from __future__ import annotations

from typing import Any

from .documents import ModelRef, parse_ref
from .registry import DEFAULT_ROOT, AliasState, ModelRegistry, ModelVersion, data_manifest, default_root

__all__ = [
    "DEFAULT_ROOT", "AliasState", "ModelRef", "ModelRegistry", "ModelVersion", "data_manifest", "default_root",
    "parse_ref", "register_model",
]


def register_model(job: Any, name: str, *, backend: Any = None, registry: ModelRegistry | None = None,
                   data: dict[str, Any] | None = None) -> ModelVersion:
    """Register the completed job ``job`` (a name or a ``trainforge.Job``) as a new
    version of model ``name`` in ``registry`` (default: ``ModelRegistry()``)."""
    from ..client import Job, get_job

    handle = job if isinstance(job, Job) else get_job(job, backend=backend)
    registry = registry if registry is not None else ModelRegistry()
    return registry.register(handle.describe(), name, backend=handle.backend.name, data=data)
