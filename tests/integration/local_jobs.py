"""Shared clean-up for tests that run local jobs: no job outlives its test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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


def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TRAINFORGE_HOME free of the caller's settings; afterwards no local
    job or tuning job of it is left running (the ``home`` fixture)."""
    from trainforge.backends.local.tuning import LocalTuning

    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "home"
    monkeypatch.setenv("TRAINFORGE_HOME", str(folder))
    yield folder
    tuning = LocalTuning("process")
    for job in tuning.list():
        if job.status and job.status.end_time is None:
            tuning.stop(job.name)
    stop_leftovers()
