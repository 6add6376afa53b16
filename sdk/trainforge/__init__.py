"""trainforge: bring-your-own-container training on Kubernetes and MinIO,
with a local mode that needs no cluster and no server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The SDK is imported on first use of a name, so ``from trainforge import
# runtime`` inside a trainer stays standard-library only (no pydantic, boto3).
_EXPORTS = {
    "Job": "client", "get_job": "client", "list_jobs": "client", "submit": "client", "submit_job": "client",
    "JobFailed": "errors", "SpecError": "errors", "TrainforgeError": "errors",
    "submit_tuning_job": "tuning_client", "get_tuning_job": "tuning_client", "list_tuning_jobs": "tuning_client",
    "TuningJobAnalytics": "tuning_client", "Continuous": "tuning_client", "Integer": "tuning_client",
    "Categorical": "tuning_client", "ModelRegistry": "registry", "register_model": "registry",
}

__all__ = ["Categorical", "Continuous", "Integer", "Job", "JobFailed", "ModelRegistry", "SpecError",
           "TrainforgeError", "TuningJobAnalytics", "get_job", "get_tuning_job", "list_jobs", "list_tuning_jobs", "register_model",
           "submit", "submit_job", "submit_tuning_job"]

if TYPE_CHECKING:
    from .client import Job, get_job, list_jobs, submit, submit_job
    from .errors import JobFailed, SpecError, TrainforgeError
    from .registry import ModelRegistry, register_model
    from .tuning_client import (
        Categorical, Continuous, Integer, TuningJobAnalytics, get_tuning_job, list_tuning_jobs, submit_tuning_job,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
