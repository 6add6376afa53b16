"""A trial is an ordinary TrainingJob: the tuning job's template, its tuned
hyperparameters merged in, a deterministic name and two labels. These pure
functions are the one place both drivers (local supervisor, controller) get
trial names, labels and records from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..spec import Phase, TrainingJob
from ..spec.tuning import TuningJob, TuningJobSpec
from ..uris import parse_uri
from .records import TrialRecord, TrialState, objective_series

from ..names import TRIAL_LABEL, TUNING_JOB_LABEL

__all__ = ["TRIAL_LABEL", "TUNING_JOB_LABEL", "trial_job", "trial_name", "trial_number", "trial_record",
           "trial_state"]




def trial_name(tuning_name: str, number: int) -> str:
    return f"{tuning_name}-{number:03d}"


def trial_job(tuning: TuningJob, number: int, hyperparameters: Mapping[str, str]) -> TrainingJob:
    """The TrainingJob of trial ``number``. A checkpoint location in the
    template becomes one per trial, so no trial resumes from another's: its
    ``{job}`` placeholder names the trial, and a location without one gets
    the trial's name appended."""
    template = tuning.spec.training_job_template
    spec = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["hyperparameters"] = {**template.hyperparameters, **hyperparameters}
    name = trial_name(tuning.name, number)
    if template.checkpoints is not None and "{job}" not in template.checkpoints.uri:
        base = parse_uri(template.checkpoints.uri).as_prefix()
        spec["checkpoints"]["uri"] = str(base.join(name).as_prefix())
    labels = {**tuning.metadata.labels, TUNING_JOB_LABEL: tuning.name, TRIAL_LABEL: str(number)}
    return TrainingJob.model_validate({
        "metadata": {"name": name, "namespace": tuning.metadata.namespace, "labels": labels},
        "spec": spec,
    })


def trial_number(job: TrainingJob, tuning_name: str) -> int | None:
    """The trial number of ``job`` if it is a trial of ``tuning_name``."""
    labels = job.metadata.labels
    if labels.get(TUNING_JOB_LABEL) != tuning_name:
        return None
    try:
        return int(labels.get(TRIAL_LABEL, ""))
    except ValueError:
        return None


def trial_state(phase: Phase, early_stopped: bool) -> TrialState:
    if phase in (Phase.PENDING, Phase.QUEUED, Phase.STAGING):
        return TrialState.PENDING
    if phase in (Phase.TRAINING, Phase.UPLOADING):
        return TrialState.RUNNING
    if phase == Phase.COMPLETED:
        return TrialState.COMPLETED
    if phase == Phase.FAILED:
        return TrialState.FAILED
    return TrialState.EARLY_STOPPED if early_stopped else TrialState.STOPPED


def trial_record(spec: TuningJobSpec, number: int, job: TrainingJob, metric_records: Iterable[Any],
                 early_stopped: bool = False, released: bool = False) -> TrialRecord:
    """What the engine sees of one trial job. ``released``: its hosts are free
    although its phase has not ended yet (the controller sees its pods end)."""
    tuned = {p.name for p in spec.parameters}
    status = job.status
    phase = status.phase if status is not None else Phase.PENDING
    series = objective_series(metric_records, spec.objective.metric)
    final = None
    if phase == Phase.COMPLETED and status is not None:
        final = status.final_metrics.get(spec.objective.metric)
        if final is None and series:
            final = series[max(series)]
    return TrialRecord(
        number=number, name=job.name,
        hyperparameters={k: v for k, v in job.spec.hyperparameters.items() if k in tuned},
        state=trial_state(phase, early_stopped), series=series, final_objective=final,
        released=released,
    )
