"""The SDK: ``submit_job(image, data, instance, hparams)`` and the ``Job`` handle.

A thin facade: every method is one call into the backend chosen by name or by
trainforge settings (``process`` by default: no cluster, no server).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import Backend, get_backend
from .backends.base import Validating
from .errors import JobFailed, SpecError, SpecIssue
from .spec import Phase, TrainingJob, TrainingJobStatus, check_job_name, parse_job
from .spec.models import generated_name
from .staging import channel_uri, download_model
from .storage import NullProgress, TransferProgress, open_store
from .uris import SCHEMES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Job", "get_job", "list_jobs", "submit", "submit_job"]


class Job:
    """A handle on one submitted job; cheap, holds only its name and backend."""

    def __init__(self, name: str, backend: Backend):
        self.name = check_job_name(name)  # InvalidJobName before any backend sees it
        self.backend = backend

    def __repr__(self) -> str:
        return f"Job({self.name!r}, backend={self.backend.name!r})"

    def describe(self) -> TrainingJob:
        return self.backend.get(self.name)

    def status(self) -> TrainingJobStatus:
        status = self.describe().status
        assert status is not None
        return status

    @property
    def phase(self) -> Phase:
        return self.status().phase

    def wait(self, timeout: float | None = None, poll: float = 0.5, raise_on_failure: bool = True) -> TrainingJobStatus:
        """Block until the job has finished; TimeoutError after ``timeout`` seconds,
        JobFailed if it ended Failed or Stopped (unless ``raise_on_failure=False``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if status.phase.finished:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.name} still {status.phase.value} after {timeout} s")
            time.sleep(poll)
        if raise_on_failure and status.phase != Phase.COMPLETED:
            raise JobFailed(self.name, status.phase.value, status.failure_reason)
        return status

    def logs(self, follow: bool = False) -> Iterator[str]:
        return self.backend.logs(self.name, follow=follow)

    def metrics(self) -> "pd.DataFrame":
        """The full metric series: timestamp, name, value, step."""
        from .metrics import to_frame

        return to_frame(self.backend.metrics(self.name))

    def stop(self) -> None:
        self.backend.stop(self.name)

    @property
    def model_uri(self) -> str | None:
        return self.status().artifacts.model

    def download_model(self, path: str | os.PathLike[str]) -> Path:
        uri = self.model_uri
        if uri is None:
            status = self.status()
            raise JobFailed(self.name, status.phase.value,
                            "no model artifact: the job has not completed" if not status.phase.finished
                            else status.failure_reason or "the job produced no model")
        # The backend's settings: a Job of a backend built with its own store
        # endpoint must not fall back to the user's default store.
        return download_model(uri, path, getattr(self.backend, "settings", None))


def _resolve_backend(backend: str | Backend | None) -> Backend:
    """A Backend given by name (or settings when None), or the one passed in."""
    return backend if backend is not None and not isinstance(backend, str) else get_backend(backend)


def _is_uri(text: str) -> bool:
    return any(text.startswith(f"{scheme}://") for scheme in SCHEMES)


def _resolve_data(data: Any, job_name: str, backend: Backend,
                  progress: TransferProgress | None) -> list[dict[str, str]]:
    """``data`` as input channels; local paths are uploaded for the user."""
    inputs, uploads = _plan_data(data, job_name, backend)
    _upload(uploads, progress)
    return inputs


def _plan_data(data: Any, job_name: str, backend: Backend) -> tuple[list[dict[str, str]], list[tuple[Path, str]]]:
    """``data`` as input channels, and the (local path, target URI) uploads
    that make them true; nothing is written yet."""
    if data is None:
        return [], []
    if isinstance(data, (str, os.PathLike)):
        data = {"train": data}
    if not isinstance(data, Mapping):
        raise SpecError([SpecIssue("data", "expected a URI, a local path or a dict of channel -> URI/path, "
                                           f"got {type(data).__name__}")])
    inputs, uploads = [], []
    for channel, source in data.items():
        source = os.fspath(source)
        if not _is_uri(source):
            path = Path(source).expanduser()
            if not path.exists():
                raise SpecError([SpecIssue(f"data.{channel}", f"local path {str(path)!r} does not exist "
                                                              "(expected a URI or an existing file or folder)")])
            # The backend's namespace (the kubernetes backend sets it on submit), else the spec's default.
            namespace = getattr(backend, "namespace", None) or "default"
            source = str(channel_uri(backend.default_data_root(), namespace, job_name, channel))
            uploads.append((path, source))
        inputs.append({"channel": str(channel), "uri": source})
    return inputs, uploads


def _upload(uploads: list[tuple[Path, str]], progress: TransferProgress | None) -> None:
    for path, target in uploads:
        store = open_store(target)
        store.ensure_bucket(target)
        if path.is_dir():
            store.upload_dir(str(path), target, progress=progress or NullProgress())
        else:
            store.upload_file(str(path), target, progress=progress or NullProgress())


def submit_job(
    image: str,
    data: Any = None,
    instance: str | Mapping[str, Any] = "local",
    hparams: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    backend: str | Backend | None = None,
    output: str | None = None,
    checkpoints: str | None = None,
    metrics: Mapping[str, str] | list[Mapping[str, str]] | None = None,
    max_runtime_seconds: int | None = None,
    max_attempts: int | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    wait: bool = False,
    progress: TransferProgress | None = None,
) -> Job:
    """Submit a training job and return its handle.

    ``data`` is one URI (the ``train`` channel), a dict of channel -> URI, or
    local paths, which are uploaded first. ``instance`` is an instance type
    name or ``{"type": ..., "count": ...}``. ``metrics`` maps metric name ->
    regex (or is a list of ``{"name", "regex"}``). ``checkpoints`` is a URI
    synced with the checkpoint folder; ``{job}`` in it makes it this job's own
    (``s3://ckpt/{job}/``), a URI without it is shared with every job given
    it, so a new job starts with what an earlier one left there.
    """
    chosen = _resolve_backend(backend)
    # The name comes first: local data is uploaded under it.
    job_name = check_job_name(name) if name else generated_name(_name_prefix(image))
    metadata: dict[str, Any] = {"name": job_name}
    if labels:
        metadata["labels"] = dict(labels)
    spec: dict[str, Any] = {
        "image": image,
        "instance": {"type": instance} if isinstance(instance, str) else dict(instance),
        "hyperparameters": dict(hparams or {}),
        "env": dict(env or {}),
    }
    if output:
        spec["output"] = {"uri": output}
    if checkpoints:
        spec["checkpoints"] = {"uri": checkpoints}
    if metrics:
        spec["metrics"] = ([{"name": k, "regex": v} for k, v in metrics.items()]
                           if isinstance(metrics, Mapping) else list(metrics))
    if max_runtime_seconds is not None:  # 0 is an error to report, not "the default"
        spec["stopping"] = {"maxRuntimeSeconds": max_runtime_seconds}
    if max_attempts is not None:
        spec["retry"] = {"maxAttempts": max_attempts}
    spec["inputs"], uploads = _plan_data(data, job_name, chosen)
    job = parse_job({"metadata": metadata, "spec": spec})  # the one parse, the data's final URIs included
    if uploads:
        # Everything the backend can tell is wrong, before anything is uploaded
        # (its submit checks again what may have changed meanwhile).
        if isinstance(chosen, Validating):
            chosen.validate(job)
        _upload(uploads, progress)
    handle = submit(job, backend=chosen)
    if wait:
        handle.wait()
    return handle


def _name_prefix(image: str) -> str:
    base = Path(image.rstrip("/")).name.split(":")[0].split("@")[0].lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40] or "job"
    return f"{cleaned}-"


def submit(job: TrainingJob | Mapping[str, Any], backend: str | Backend | None = None) -> Job:
    """Submit a whole TrainingJob document (what ``trainforge submit SPEC`` does)."""
    chosen = _resolve_backend(backend)
    document = job if isinstance(job, TrainingJob) else parse_job(job)
    chosen.submit(document)
    return Job(document.name, chosen)


def get_job(name: str, backend: str | Backend | None = None) -> Job:
    check_job_name(name)
    chosen = _resolve_backend(backend)
    chosen.get(name)  # JobNotFound early
    return Job(name, chosen)


def list_jobs(backend: str | Backend | None = None) -> list[TrainingJob]:
    chosen = _resolve_backend(backend)
    return chosen.list()
