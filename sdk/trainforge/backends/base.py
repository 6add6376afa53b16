"""The seam between the client and where jobs run: one small protocol.

Every backend (process, container, kubernetes) stores and answers for jobs by
name; the client (``trainforge.client``) only ever talks to this protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..metrics import MetricRecord
from ..spec import TrainingJob, TrainingJobStatus


class Backend(Protocol):
    name: str

    def submit(self, job: TrainingJob) -> None:
        """Start the job; raises SpecError/BackendError before anything is created."""

    def get(self, name: str) -> TrainingJob:
        """The job with its current status; JobNotFound if there is none."""

    def list(self) -> list[TrainingJob]: ...

    def logs(self, name: str, follow: bool = False) -> Iterator[str]:
        """Log lines (without newline); with follow, until the job has finished."""

    def metrics(self, name: str) -> list[MetricRecord]: ...

    def stop(self, name: str) -> None:
        """Ask the job to stop: SIGTERM, the grace period, then kill."""

    def default_output(self) -> str:
        """Where artifacts go when the spec names no output URI."""

    def default_data_root(self) -> str:
        """Where local data passed to submit_job is uploaded."""


@runtime_checkable
class Validating(Protocol):
    """Optional capability: check a job before any data is uploaded for it."""

    def validate(self, job: TrainingJob) -> None:
        """Raise SpecError/BackendError for what this backend can tell is wrong with
        the job (instance type, image, its own state)."""


def finished(status: TrainingJobStatus | None) -> bool:
    return status is not None and status.phase.finished
