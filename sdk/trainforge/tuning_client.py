"""The SDK for tuning jobs: ``submit_tuning_job(image, data, instance,
parameters, objective, ...)`` and the handle it returns. Trials are ordinary
jobs, so ``best_trial()`` and ``trials()`` return :class:`~trainforge.Job`.

Tuning jobs run on the local backends (``process``, ``container``) under a
detached tuning supervisor, or on ``kubernetes`` as a TuningJob custom resource
that the controller drives. Both are a :class:`TuningBackend`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .client import Job, _name_prefix, _resolve_data
from .config import load_settings
from .errors import BackendError, JobFailed, SpecError, SpecIssue
from .spec import parse_job, parse_tuning_job
from .spec import TrainingJob
from .spec.tuning import TuningJob, TuningJobStatus
from .tuning.records import TrialRecord

if TYPE_CHECKING:
    import pandas as pd

    from .backends.base import Backend

__all__ = ["Categorical", "Continuous", "Integer", "TuningJobAnalytics", "TuningJobHandle", "get_tuning_job",
           "list_tuning_jobs", "submit_tuning", "submit_tuning_job"]

FINISHED = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class Continuous:
    min: float
    max: float
    scale: str = "Linear"

    def to_dict(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "Continuous", "min": self.min, "max": self.max, "scale": self.scale}


@dataclass(frozen=True)
class Integer:
    min: int
    max: int
    scale: str = "Linear"
    step: int | None = None

    def to_dict(self, name: str) -> dict[str, Any]:
        out = {"name": name, "type": "Integer", "min": self.min, "max": self.max, "scale": self.scale}
        return out if self.step is None else {**out, "step": self.step}


@dataclass(frozen=True)
class Categorical:
    values: Sequence[Any]

    def to_dict(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "Categorical", "values": list(self.values)}


class TuningBackend(Protocol):
    """Where tuning jobs run: ``LocalTuning`` (a supervisor per tuning job on
    this machine) or ``KubernetesTuning`` (a custom resource the controller drives).
    ``jobs`` is the training backend the trials are jobs of."""

    name: str
    jobs: Backend

    def submit(self, tuning: TuningJob) -> None: ...
    def get(self, name: str) -> TuningJob: ...
    def list(self) -> list[TuningJob]: ...
    def stop(self, name: str) -> None: ...
    def resume(self, name: str) -> None: ...
    def trial_jobs(self, name: str) -> dict[int, TrainingJob]: ...
    def records(self, name: str, tuning: TuningJob | None = None) -> list[TrialRecord]: ...
    def early_stops(self, name: str) -> dict[int, str]: ...


def tuning_backend(backend: str | None = None, **options: str) -> TuningBackend:
    settings = load_settings()
    kind = backend or settings.backend
    if kind == "kubernetes":
        from .backends.kubernetes_tuning import KubernetesTuning

        return KubernetesTuning(settings, **options)
    if kind not in ("process", "container"):
        raise BackendError(f"tuning jobs run on the process, container and kubernetes backends, not {kind!r}")
    from .backends.local.tuning import LocalTuning

    return LocalTuning(kind, settings, **options)


class TuningJobHandle:
    """A handle on one tuning job; holds only its name and backend."""

    def __init__(self, name: str, backend: TuningBackend):
        self.name = name
        self.backend = backend

    def __repr__(self) -> str:
        return f"TuningJobHandle({self.name!r}, backend={self.backend.name!r})"

    def describe(self) -> TuningJob:
        return self.backend.get(self.name)

    def status(self) -> TuningJobStatus:
        status = self.describe().status
        assert status is not None
        return status

    def wait(self, timeout: float | None = None, poll: float = 1.0, raise_on_failure: bool = True) -> TuningJobStatus:
        """Block until the tuning job has ended; TimeoutError after ``timeout``
        seconds, JobFailed if it ended Failed (Stopped and Completed return)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if status.phase in FINISHED:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"tuning job {self.name} still {status.phase} after {timeout} s")
            time.sleep(poll)
        if raise_on_failure and status.phase == "Failed":
            raise JobFailed(self.name, status.phase, status.failure_reason)
        return status

    def trials(self) -> list[Job]:
        return [Job(job.name, self.backend.jobs) for _, job in sorted(self.backend.trial_jobs(self.name).items())]

    def best_trial(self) -> Job | None:
        best = self.status().best_trial
        return None if best is None else Job(best.name, self.backend.jobs)

    def dataframe(self) -> pd.DataFrame:
        return TuningJobAnalytics(self.name, backend=self.backend).dataframe()

    def stop(self) -> None:
        self.backend.stop(self.name)


class TuningJobAnalytics:
    """SageMaker-style analytics: ``TuningJobAnalytics(name).dataframe()``."""

    def __init__(self, name: str, backend: str | TuningBackend | None = None):
        self.name = name
        self.backend = backend if backend is not None and not isinstance(backend, str) else tuning_backend(backend)

    def dataframe(self) -> pd.DataFrame:
        from .tuning.analytics import trials_frame

        tuning = self.backend.get(self.name)
        return trials_frame(tuning.spec, self.backend.trial_jobs(self.name), self.backend.early_stops(self.name))


def _parameters(parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(parameters, Mapping):
        out = []
        for name, value in parameters.items():
            if isinstance(value, (Continuous, Integer, Categorical)):
                out.append(value.to_dict(name))
            elif isinstance(value, Mapping):
                out.append({"name": name, **value})
            else:
                raise SpecError([SpecIssue(f"parameters.{name}", "expected Continuous(...), Integer(...), "
                                                                 f"Categorical(...) or a dict, got {value!r}")])
        return out
    return [dict(p) for p in parameters]


def _objective(objective: str | Mapping[str, Any] | tuple[str, str]) -> dict[str, Any]:
    if isinstance(objective, str):
        return {"metric": objective, "type": "Maximize"}
    if isinstance(objective, tuple):
        return {"metric": objective[0], "type": objective[1]}
    return dict(objective)


def submit_tuning_job(
    image: str,
    data: Any,
    instance: str | Mapping[str, Any],
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    objective: str | Mapping[str, Any] | tuple[str, str],
    *,
    hparams: Mapping[str, Any] | None = None,
    metrics: Mapping[str, str] | list[Mapping[str, str]] | None = None,
    strategy: str = "Bayesian",
    seed: int | None = None,
    hyperband: Mapping[str, Any] | None = None,
    early_stopping: str | Mapping[str, Any] = "Off",
    max_trials: int = 20,
    max_parallel: int = 1,
    max_failed: int = 3,
    max_runtime_seconds: int | None = None,
    completion: Mapping[str, Any] | None = None,
    warm_start: Sequence[str] | None = None,
    name: str | None = None,
    output: str | None = None,
    checkpoints: str | None = None,
    trial_max_runtime_seconds: int | None = None,
    env: Mapping[str, str] | None = None,
    backend: str | None = None,
    wait: bool = False,
) -> TuningJobHandle:
    """Start a tuning job: up to ``max_trials`` trainings of ``image`` on
    ``data``, ``max_parallel`` at a time, searching ``parameters`` (name ->
    ``Continuous``/``Integer``/``Categorical`` or dict) for the best
    ``objective`` (a metric name to maximise, ``(name, "Minimize")`` or a
    dict). ``metrics`` are the template's metric regexes (name -> regex)."""
    chosen = tuning_backend(backend)
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": _name_prefix(image)[:40]}
    # Fix the name first: local data is uploaded under it.
    tuning_name = parse_job({"metadata": metadata, "spec": {"image": image}}).name
    template: dict[str, Any] = {
        "image": image, "instance": {"type": instance} if isinstance(instance, str) else dict(instance),
        "hyperparameters": dict(hparams or {}), "env": dict(env or {}),
    }
    if metrics:
        template["metrics"] = ([{"name": k, "regex": v} for k, v in metrics.items()]
                               if isinstance(metrics, Mapping) else list(metrics))
    if output:
        template["output"] = {"uri": output}
    if checkpoints:
        template["checkpoints"] = {"uri": checkpoints}
    if trial_max_runtime_seconds is not None:
        template["stopping"] = {"maxRuntimeSeconds": trial_max_runtime_seconds}
    limits: dict[str, Any] = {"maxTrials": max_trials, "maxParallelTrials": max_parallel,
                              "maxFailedTrials": max_failed}
    if max_runtime_seconds is not None:
        limits["maxRuntimeSeconds"] = max_runtime_seconds
    spec: dict[str, Any] = {
        "trainingJobTemplate": template, "objective": _objective(objective),
        "parameters": _parameters(parameters),
        "strategy": {"type": strategy, **({"seed": seed} if seed is not None else {}),
                     **({"hyperband": dict(hyperband)} if hyperband else {})},
        "earlyStopping": {"type": early_stopping} if isinstance(early_stopping, str) else dict(early_stopping),
        "limits": limits,
        "completion": dict(completion or {}),
    }
    if warm_start:
        spec["warmStart"] = {"parents": list(warm_start)}
    document = {"metadata": {**metadata, "name": tuning_name}, "spec": spec}
    parse_tuning_job(document)  # everything but the data, before any upload
    chosen.jobs.validate(parse_job({"metadata": {"name": tuning_name}, "spec": template}))
    template["inputs"] = _resolve_data(data, tuning_name, chosen.jobs, None)
    handle = submit_tuning(document, backend=chosen)
    if wait:
        handle.wait()
    return handle


def submit_tuning(tuning: TuningJob | Mapping[str, Any],
                  backend: str | TuningBackend | None = None) -> TuningJobHandle:
    """Submit a whole TuningJob document (what ``trainforge tune SPEC`` does)."""
    chosen = backend if backend is not None and not isinstance(backend, str) else tuning_backend(backend)
    document = tuning if isinstance(tuning, TuningJob) else parse_tuning_job(tuning)
    chosen.submit(document)
    return TuningJobHandle(document.name, chosen)


def get_tuning_job(name: str, backend: str | None = None) -> TuningJobHandle:
    chosen = tuning_backend(backend)
    chosen.get(name)  # JobNotFound early
    return TuningJobHandle(name, chosen)


def list_tuning_jobs(backend: str | None = None) -> list[TuningJob]:
    return tuning_backend(backend).list()
