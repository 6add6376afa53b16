"""trainforge: bring-your-own-container training on Kubernetes and MinIO,
with a local mode that needs no cluster and no server."""

from __future__ import annotations

__version__ = "0.1.0"

from .client import Job, get_job, list_jobs, submit, submit_job
from .errors import JobFailed, SpecError, TrainforgeError

__all__ = ["Job", "JobFailed", "SpecError", "TrainforgeError", "get_job", "list_jobs", "submit", "submit_job"]
