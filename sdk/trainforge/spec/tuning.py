"""The TuningJob document: a TrainingJob template, an objective, the ranges of
the tuned hyperparameters, a search strategy and limits. Same apiVersion and
conventions as the TrainingJob (camelCase on the wire, unknown fields
rejected), so it loads from JSON/YAML and becomes a custom resource too.

Every rule a person can break is checked here, with its field path: a range
with min >= max, a log scale over non-positive values, an empty categorical,
a grid over a continuous range, a tuned hyperparameter also set statically in
the template, an objective the template's metrics do not define.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .models import (
    API_VERSION, HYPERPARAMETER_PATTERN, Condition, Metadata, TrainingJobSpec, WireString, _Model,
)

TUNING_KIND = "TuningJob"
# A grid is enumerated in memory; past this it is not a grid search anyone waits for.
MAX_GRID_POINTS = 100_000
MAX_NAME = 57


class ParameterType(str, Enum):
    CONTINUOUS = "Continuous"
    INTEGER = "Integer"
    CATEGORICAL = "Categorical"


class Scale(str, Enum):
    LINEAR = "Linear"
    LOG = "Log"
    # For values just below 1 (momentum, beta): 1 - x is searched log-uniformly.
    REVERSE_LOG = "ReverseLog"


class Parameter(_Model):
    """One tuned hyperparameter. One flat shape for the three kinds (the CRD's
    structural schema has no tagged unions); which fields apply is checked."""

    name: str = Field(pattern=HYPERPARAMETER_PATTERN, max_length=256)
    type: ParameterType
    min: float | None = Field(default=None, description="Continuous and Integer: lower bound (inclusive)")
    max: float | None = Field(default=None, description="Continuous and Integer: upper bound (inclusive)")
    scale: Scale = Scale.LINEAR
    step: int | None = Field(default=None, ge=1, description="Integer only: values min, min+step, ...")
    values: list[WireString] | None = Field(default=None, max_length=1000,
                                            description="Categorical only: the choices (strings on the wire)")

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.type == ParameterType.CATEGORICAL:
            if self.min is not None or self.max is not None or self.step is not None:
                raise ValueError("a Categorical parameter takes values, not min/max/step")
            if self.scale != Scale.LINEAR:
                raise ValueError("a Categorical parameter has no scale")
            if not self.values:
                raise ValueError("a Categorical parameter needs at least one value in values")
            if len(set(self.values)) != len(self.values):
                raise ValueError("values must not repeat")
            return self
        kind = f"{'an' if self.type == ParameterType.INTEGER else 'a'} {self.type.value} parameter"
        if self.values is not None:
            raise ValueError(f"{kind} takes min and max, not values")
        if self.min is None or self.max is None:
            raise ValueError(f"{kind} needs both min and max")
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be less than max ({self.max:g})")
        if self.type == ParameterType.INTEGER:
            if self.min != int(self.min) or self.max != int(self.max):
                raise ValueError("an Integer parameter needs whole-number min and max")
            if self.scale == Scale.REVERSE_LOG:
                raise ValueError("ReverseLog scale applies to Continuous parameters only")
            if self.step is not None and self.scale == Scale.LOG and self.step != 1:
                raise ValueError("an Integer parameter on a Log scale takes no step")
        elif self.step is not None:
            raise ValueError("step applies to Integer parameters only")
        if self.scale == Scale.LOG and self.min <= 0:
            raise ValueError(f"a Log scale needs min > 0, got {self.min:g}")
        if self.scale == Scale.REVERSE_LOG and not (0 <= self.min and self.max < 1):
            raise ValueError("a ReverseLog scale needs 0 <= min and max < 1")
        return self

    def grid_values(self) -> list[str]:
        """Every value a grid search tries, as wire strings."""
        if self.type == ParameterType.CATEGORICAL:
            return list(self.values or [])
        if self.type == ParameterType.INTEGER:
            assert self.min is not None and self.max is not None
            return [str(v) for v in range(int(self.min), int(self.max) + 1, self.step or 1)]
        raise ValueError("a Continuous range has no grid")


class ObjectiveType(str, Enum):
    MAXIMIZE = "Maximize"
    MINIMIZE = "Minimize"


class Objective(_Model):
    metric: str = Field(min_length=1, max_length=255, description="a metric name of the template's metrics")
    type: ObjectiveType = ObjectiveType.MAXIMIZE

    def better(self, a: float, b: float) -> bool:
        """a is strictly better than b."""
        return a > b if self.type == ObjectiveType.MAXIMIZE else a < b


class StrategyType(str, Enum):
    RANDOM = "Random"
    GRID = "Grid"
    BAYESIAN = "Bayesian"    # Optuna's TPE
    HYPERBAND = "Hyperband"  # asynchronous successive halving over a sampler


class Hyperband(_Model):
    """Asynchronous successive halving: a trial reports the objective per step
    (epoch); at steps minResource * reductionFactor**k only the best
    1/reductionFactor of the trials that reached that step go on."""

    min_resource: int = Field(default=1, ge=1, description="first rung, in steps (epochs)")
    max_resource: int = Field(default=81, ge=1, description="the steps a trial runs when never stopped")
    reduction_factor: int = Field(default=3, ge=2, le=100)
    sampler: Literal["Random", "Bayesian"] = "Bayesian"

    @model_validator(mode="after")
    def _order(self) -> Hyperband:
        if self.min_resource >= self.max_resource:
            raise ValueError(f"minResource ({self.min_resource}) must be less than maxResource ({self.max_resource})")
        return self


class Strategy(_Model):
    type: StrategyType = StrategyType.BAYESIAN
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="same seed, same trials")
    hyperband: Hyperband | None = None

    @model_validator(mode="after")
    def _hyperband_settings(self) -> Strategy:
        if self.hyperband is not None and self.type != StrategyType.HYPERBAND:
            raise ValueError("hyperband settings apply to type Hyperband only")
        return self


class EarlyStoppingType(str, Enum):
    OFF = "Off"
    # SageMaker's rule: stop a trial whose best objective so far is worse than
    # the median of the other trials' running values at the same step.
    MEDIAN = "Median"


class EarlyStopping(_Model):
    type: EarlyStoppingType = EarlyStoppingType.OFF
    min_trials: int = Field(default=3, ge=1, description="trials that must have reached a step before it is judged")
    min_steps: int = Field(default=1, ge=1, description="steps a trial runs before it can be stopped")


class Limits(_Model):
    max_trials: int = Field(default=20, ge=1, le=100_000)
    max_parallel_trials: int = Field(default=1, ge=1, le=1000)
    max_failed_trials: int = Field(default=3, ge=0, le=100_000,
                                   description="the tuning job fails once more trials than this have failed")
    max_runtime_seconds: int = Field(default=7 * 86400, ge=1, le=28 * 86400)


class Completion(_Model):
    target_value: float | None = Field(default=None, description="end as soon as a trial reaches this objective")
    no_improvement_trials: int | None = Field(default=None, ge=1,
                                              description="end when the best has not improved over this many finished trials")


class WarmStart(_Model):
    parents: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        min_length=1, max_length=5, description="finished tuning jobs whose trials seed the search")


class TuningJobSpec(_Model):
    training_job_template: TrainingJobSpec
    objective: Objective
    parameters: list[Parameter] = Field(min_length=1, max_length=100)
    strategy: Strategy = Field(default_factory=Strategy)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    limits: Limits = Field(default_factory=Limits)
    completion: Completion = Field(default_factory=Completion)
    warm_start: WarmStart | None = None

    @model_validator(mode="after")
    def _coherent(self) -> TuningJobSpec:
        # Raised as (field, message) pairs by check_spec so each names its path.
        problems = tuning_spec_problems(self)
        if problems:
            raise TuningSpecProblems(problems)
        return self


class TuningSpecProblems(ValueError):
    """Cross-field problems, each with its path relative to ``spec``."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def tuning_spec_problems(spec: TuningJobSpec) -> list[tuple[tuple[Any, ...], str]]:
    """Rules between fields, as (path below spec, message). Pure."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    names = [p.name for p in spec.parameters]
    for i, parameter in enumerate(spec.parameters):
        if names.index(parameter.name) != i:
            problems.append((("parameters", i, "name"), f"{parameter.name!r} is tuned twice"))
        if parameter.name in spec.training_job_template.hyperparameters:
            problems.append((("parameters", i, "name"),
                             f"{parameter.name!r} is tuned and also set in trainingJobTemplate.hyperparameters; "
                             "remove one"))
    metrics = [m.name for m in spec.training_job_template.metrics]
    if spec.objective.metric not in metrics:
        defined = ", ".join(metrics) if metrics else "none"
        problems.append((("objective", "metric"),
                         f"{spec.objective.metric!r} is not a metric of trainingJobTemplate.metrics (defined: {defined})"))
    if spec.strategy.type == StrategyType.GRID:
        size = 1
        for i, parameter in enumerate(spec.parameters):
            if parameter.type == ParameterType.CONTINUOUS:
                problems.append((("parameters", i, "type"),
                                 "a Grid strategy needs Integer or Categorical parameters, not a Continuous range"))
            else:
                size *= len(parameter.grid_values())
        if size > MAX_GRID_POINTS:
            problems.append((("parameters",), f"the grid has {size} points, more than {MAX_GRID_POINTS}"))
    if spec.strategy.type == StrategyType.HYPERBAND and spec.early_stopping.type != EarlyStoppingType.OFF:
        problems.append((("earlyStopping", "type"), "Hyperband stops trials itself; set earlyStopping.type to Off"))
    return problems


class TrialCounts(_Model):
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    stopped: int = 0


class BestTrial(_Model):
    name: str
    number: int
    objective: float
    hyperparameters: dict[str, str] = Field(default_factory=dict)


class TuningJobStatus(_Model):
    """Counts and the best trial only: the trial table comes from the trials
    themselves, never from one ever-growing object."""

    phase: str = "Pending"
    message: str = ""
    failure_reason: str | None = None
    trials: TrialCounts = Field(default_factory=TrialCounts)
    best_trial: BestTrial | None = None
    conditions: list[Condition] = Field(default_factory=list)
    start_time: str | None = None
    end_time: str | None = None
    observed_generation: int | None = Field(default=None, description="the generation the controller last saw")


class TuningJob(_Model):
    api_version: Literal["trainforge.dev/v1alpha1"] = API_VERSION
    kind: Literal["TuningJob"] = TUNING_KIND
    metadata: Metadata
    spec: TuningJobSpec
    status: TuningJobStatus | None = None

    @model_validator(mode="after")
    def _room_for_trial_numbers(self) -> TuningJob:
        # Trials are named <tuning job>-<number>, and a name has at most 63 characters.
        if len(self.metadata.name) > MAX_NAME:
            raise TuningSpecProblems([(("metadata", "name"), f"a tuning job name has at most {MAX_NAME} "
                                       f"characters (its trials add '-<number>'), got {len(self.metadata.name)}")])
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
