"""Tuning jobs on Kubernetes: a TuningJob custom resource per tuning job; the
controller's TuningJob reconciler runs the trials. Trials are TrainingJobs
labelled with their tuning job and number, read by label; their metrics come
from the object store, as any job's. Same surface as the local
``LocalTuning`` (submit, get, list, stop, trial_jobs, records, early_stops).
"""

from __future__ import annotations

from typing import Any

from ..artifacts import tenancy_issues
from ..config import Settings
from ..errors import BackendError, SpecError, TrainforgeError
from ..names import (
    EARLY_STOP_ANNOTATION, GROUP, STOP_ANNOTATION, STOP_REASON_ANNOTATION, TRAINING_PLURAL, TUNING_JOB_LABEL,
    TUNING_PLURAL, VERSION,
)
from ..spec import TrainingJob, check_job_name
from ..spec.tuning import TuningJob
from ..tuning.records import TrialRecord
from ..tuning.trials import trial_job, trial_number, trial_record
from .kubernetes import KubernetesBackend, _from_wire, api_error


class KubernetesTuning:
    name = "kubernetes"

    def __init__(self, settings: Settings, **options: Any):
        self.jobs = KubernetesBackend(settings, **options)
        self.settings = settings

    @property
    def namespace(self) -> str:
        return self.jobs.namespace

    def _error(self, exc: Any, name: str, doing: str) -> TrainforgeError:
        return api_error(exc, "tuning job", f"{self.namespace}/{name}", f"{doing} tuning job")

    def submit(self, tuning: TuningJob) -> None:
        """The template checked as trial 0 would run here (tenancy), then the
        custom resource; the apiserver's schema checks it again."""
        trial = trial_job(tuning, 0, {})
        trial.metadata.namespace = self.namespace
        issues = tenancy_issues(trial, self.jobs.default_output())
        if issues:
            raise SpecError(issues, source=f"{self.namespace}/{tuning.name} (trainingJobTemplate)")
        body = tuning.model_copy(update={"status": None}).to_dict()
        body["metadata"]["namespace"] = self.namespace
        try:
            self.jobs.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, TUNING_PLURAL, body)
        except self.jobs._client.ApiException as exc:
            raise self._error(exc, tuning.name, "creating") from exc

    def _raw(self, name: str) -> dict[str, Any]:
        check_job_name(name)  # never a path segment of an API URL unchecked
        try:
            return self.jobs.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, TUNING_PLURAL, name)
        except self.jobs._client.ApiException as exc:
            raise self._error(exc, name, "reading") from exc

    def get(self, name: str) -> TuningJob:
        return _tuning_from_wire(self._raw(name))

    def list(self) -> list[TuningJob]:
        try:
            items = self.jobs.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                                   TUNING_PLURAL)["items"]
        except self.jobs._client.ApiException as exc:
            raise self._error(exc, "*", "listing") from exc
        found = [_tuning_from_wire(i) for i in items]
        return sorted(found, key=lambda t: (t.status.start_time or "", t.name) if t.status else ("", t.name))

    def stop(self, name: str) -> None:
        """The controller stops the running trials (each says why)."""
        check_job_name(name)
        patch = {"metadata": {"annotations": {STOP_ANNOTATION: "true"}}}
        try:
            self.jobs.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, TUNING_PLURAL, name, patch)
        except self.jobs._client.ApiException as exc:
            raise self._error(exc, name, "stopping") from exc

    def resume(self, name: str) -> None:
        self.get(name)
        raise BackendError(f"tuning job {self.namespace}/{name} is driven by the cluster's controller: "
                           "there is no supervisor to resume")

    # -- trials -------------------------------------------------------------------
    def _trial_objects(self, name: str) -> list[dict[str, Any]]:
        check_job_name(name)  # it becomes a label selector
        try:
            return list(self.jobs.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINING_PLURAL, label_selector=f"{TUNING_JOB_LABEL}={name}")["items"])
        except self.jobs._client.ApiException as exc:
            raise self._error(exc, name, "listing trials of") from exc

    def trial_jobs(self, name: str) -> dict[int, TrainingJob]:
        found: dict[int, TrainingJob] = {}
        for raw in self._trial_objects(name):
            job = _from_wire(raw)
            number = trial_number(job, name)
            if number is not None:
                found[number] = job
        return found

    def early_stops(self, name: str) -> dict[int, str]:
        """Trial number -> why an early-stopping rule stopped it."""
        out = {}
        for number, job in self.trial_jobs(name).items():
            if job.metadata.annotations.get(EARLY_STOP_ANNOTATION) == "true":
                out[number] = job.metadata.annotations.get(STOP_REASON_ANNOTATION, "")
        return out

    def records(self, name: str, tuning: TuningJob | None = None) -> list[TrialRecord]:
        tuning = tuning or self.get(name)
        jobs = self.trial_jobs(name)
        stops = {n for n, job in jobs.items() if job.metadata.annotations.get(EARLY_STOP_ANNOTATION) == "true"}
        return [trial_record(tuning.spec, number, job, self.jobs.metrics(job.name), number in stops)
                for number, job in sorted(jobs.items())]


def _tuning_from_wire(raw: dict[str, Any]) -> TuningJob:
    meta = raw["metadata"]
    return TuningJob.model_validate({
        "apiVersion": raw["apiVersion"], "kind": raw["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": raw["spec"], "status": raw.get("status") or {},
    })
