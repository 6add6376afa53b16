"""Shared clean-up for tests that run local jobs: no job outlives its test."""

from __future__ import annotations

import trainforge
from trainforge.backends.local.backend import LocalBackend


def stop_leftovers() -> None:
    """Stop every unfinished job in the current TRAINFORGE_HOME and wait for it."""
    backend = LocalBackend("process")
    running = [job.name for job in backend.list() if job.status and not job.status.phase.finished]
    for name in running:
        backend.stop(name)
    for name in running:
        trainforge.Job(name, backend).wait(timeout=60, raise_on_failure=False)
