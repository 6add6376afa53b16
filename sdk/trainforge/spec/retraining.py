"""The RetrainingPolicy document: retraining on the cluster without CI. It
holds a TrainingJob template, what triggers a run (a cron schedule and/or new
data under the inputs), the gate, the model and alias to promote, and a
CronJob-like concurrency policy. The controller's decisions on it are pure
functions in ``trainforge_controller.retraining``.

Why a custom resource and not a CronJob running ``trainforge retrain``: the
data trigger and the gate need state across runs (the last data digest seen,
the champion the gate compared with, the history), which a status holds and a
CronJob's pods would have to keep elsewhere; and the controller already owns
TrainingJobs, their credentials and the object store, so no extra pod, image or
service-account token with store access is needed per run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .models import API_VERSION, NAME_PATTERN, Metadata, StorageUri, TrainingJobSpec, _Model

RETRAINING_KIND = "RetrainingPolicy"
MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
ALIAS_PATTERN = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
MAX_HISTORY = 100


class RetrainingGate(_Model):
    metric: str = Field(min_length=1, max_length=255, description="one of the template's metrics")
    min: float | None = None
    max: float | None = None
    max_regression: float | None = Field(default=None, ge=0, description="at most this much worse than promoteTo")
    direction: Literal["maximize", "minimize"] = "maximize"

    @model_validator(mode="after")
    def _has_a_rule(self) -> RetrainingGate:
        if self.min is None and self.max is None and self.max_regression is None:
            raise ValueError("a gate needs min, max or maxRegression: with none it would pass anything")
        return self


class RetrainingModel(_Model):
    name: str = Field(pattern=MODEL_NAME_PATTERN, max_length=63)
    registry: StorageUri | None = Field(default=None, description="registry root (default: the controller's)")
    promote_to: str | None = Field(default=None, pattern=ALIAS_PATTERN, max_length=63)


class DataTrigger(_Model):
    uris: list[StorageUri] = Field(default_factory=list, max_length=32,
                                   description="prefixes to watch (default: the template's inputs)")
    check_interval_seconds: int = Field(default=300, ge=30, le=7 * 86400,
                                        description="how often the listing is compared (a cheap manifest digest)")


class RetrainingPolicySpec(_Model):
    training_job_template: TrainingJobSpec
    schedule: str | None = Field(default=None, max_length=100, description="cron: minute hour day month weekday (UTC)")
    data_trigger: DataTrigger | None = None
    gate: RetrainingGate
    model: RetrainingModel
    concurrency_policy: Literal["Forbid", "Replace"] = "Forbid"
    history_limit: int = Field(default=10, ge=1, le=MAX_HISTORY)
    suspend: bool = False

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from ..cron import parse_cron

            parse_cron(value)  # ValueError names the field that is wrong
        return value

    @model_validator(mode="after")
    def _has_a_trigger(self) -> RetrainingPolicySpec:
        if self.schedule is None and self.data_trigger is None:
            raise ValueError("a policy needs a schedule, a dataTrigger or both")
        if self.data_trigger is not None and not (self.data_trigger.uris or self.training_job_template.inputs):
            raise ValueError("dataTrigger watches the template's inputs by default, and it has none: name uris")
        names = {m.name for m in self.training_job_template.metrics}
        if self.gate.metric not in names:
            raise ValueError(f"gate.metric {self.gate.metric!r} is not one of the template's metrics "
                             f"({', '.join(sorted(names)) or 'none'}): the job would never report it")
        return self


class RetrainingRun(_Model):
    """One run in the status history (newest first)."""

    job: str = Field(pattern=NAME_PATTERN)
    trigger: str
    start_time: str
    phase: str = "Pending"
    gate: str | None = None          # "passed: ..." / "failed: ..."
    version: int | None = None       # registered version
    promoted: bool = False
    message: str = ""


class RetrainingPolicyStatus(_Model):
    active: str | None = None
    runs_started: int = 0
    last_schedule_time: str | None = None
    data_digest: str | None = Field(default=None, description="the inputs' manifest digest the last run was given")
    data_checked_time: str | None = None
    history: list[RetrainingRun] = Field(default_factory=list, max_length=MAX_HISTORY)


class RetrainingPolicy(_Model):
    api_version: Literal["trainforge.dev/v1alpha1"] = API_VERSION
    kind: Literal["RetrainingPolicy"] = RETRAINING_KIND
    metadata: Metadata
    spec: RetrainingPolicySpec
    status: RetrainingPolicyStatus | None = None
