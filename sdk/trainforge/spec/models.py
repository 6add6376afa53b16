"""The TrainingJob document: one pydantic model behind the SDK, the CLI, the
local backends and the Kubernetes custom resource (whose schema is generated
from these classes). Field names follow SageMaker's meaning in camelCase.
"""

from __future__ import annotations

import re
import secrets
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo,
    field_validator, model_validator,
)
from pydantic.alias_generators import to_camel

from ..contract import colliding_names, reserved_env
from ..names import API_VERSION
from ..regex import compile_metric_regex
from ..uris import parse_uri
from . import limits


KIND = "TrainingJob"

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GENERATE_NAME_PATTERN = r"^[a-z0-9][-a-z0-9]*$"
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
HYPERPARAMETER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_METRIC_REGEX_LENGTH = 1024
MAX_METRICS = 40  # as SageMaker; each is applied to every log line


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid",
        validate_assignment=True,
    )


def _check_uri(value: str) -> str:
    parse_uri(value)
    return value


# The pattern is only for the CRD schema (so the apiserver rejects bad URIs too);
# in Python, parse_uri gives the better message.
URI_PATTERN = r"^((s3|local)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.+)$"
StorageUri = Annotated[str, AfterValidator(_check_uri), Field(
    description="s3://bucket/key, local://bucket/key (embedded store) or file:///path",
    json_schema_extra={"pattern": URI_PATTERN},
)]

# What each pattern means, for error messages a person can act on.
PATTERN_MEANING = {
    NAME_PATTERN: "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit",
    GENERATE_NAME_PATTERN: "a name prefix: lowercase letters, digits and '-', starting with a letter or digit",
    CHANNEL_PATTERN: "a channel name: letters, digits, '_' and '-', at most 63 characters",
    HYPERPARAMETER_PATTERN: "a hyperparameter name: a letter or '_' then letters, digits, '_', '.', '-'",
    ENV_NAME_PATTERN: "an environment variable name: a letter or '_' then letters, digits, '_'",
}


def _to_wire_string(value: Any) -> Any:
    # Hyperparameters travel as strings (as in SageMaker); accept Python scalars.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return value


WireString = Annotated[str, BeforeValidator(_to_wire_string)]


def _not_reserved(name: str) -> str:
    if reserved_env(name):
        raise ValueError(f"{name!r} is reserved: the training contract sets it (SM_*, TRAINFORGE_*, "
                         "rendezvous and loader variables cannot be set in spec.env)")
    return name


EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN), AfterValidator(_not_reserved)]


def _no_collisions(names: Any, prefix: str, what: str) -> None:
    clashes = colliding_names(names, prefix)
    if clashes:
        raise ValueError("; ".join(f"{what} {' and '.join(repr(n) for n in group)} map to the same variable {var}"
                                   for var, group in clashes))


class Distribution(str, Enum):
    FULLY_REPLICATED = "FullyReplicated"
    SHARDED_BY_S3_KEY = "ShardedByS3Key"


class InputMode(str, Enum):
    FILE = "File"
    # Local backends link instead of copy when the data is already on this machine.
    FAST_FILE = "FastFile"


class Phase(str, Enum):
    PENDING = "Pending"
    QUEUED = "Queued"
    STAGING = "Staging"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def finished(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.STOPPED)


class Metadata(_Model):
    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN,
                      description="DNS-1123 label: lowercase letters, digits and '-'")
    generate_name: str | None = Field(default=None, max_length=57, pattern=GENERATE_NAME_PATTERN, exclude=True,
                                      description="prefix for a unique name when name is absent")
    namespace: str = Field(default="default", min_length=1, max_length=63, pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _generate_name(cls, data: Any) -> Any:
        # Kubernetes-style generateName, so one spec file can be submitted many times.
        if isinstance(data, dict) and not data.get("name"):
            prefix = data.get("generateName") or data.get("generate_name")
            # A bad prefix generates nothing: its own error names metadata.generateName.
            if isinstance(prefix, str) and len(prefix) <= 57 and re.match(GENERATE_NAME_PATTERN, prefix):
                data = {**data, "name": generated_name(prefix)}
        return data


def generated_name(prefix: str) -> str:
    """What ``metadata.generateName: prefix`` becomes."""
    return f"{prefix}{secrets.token_hex(3)}"


class Instance(_Model):
    type: str = Field(default="local", min_length=1, description="instance type from the catalog")
    count: int = Field(default=1, ge=1, le=1024, description="number of hosts")


class InputChannel(_Model):
    channel: str = Field(pattern=CHANNEL_PATTERN, description="channel name, e.g. train")
    uri: StorageUri
    distribution: Distribution = Distribution.FULLY_REPLICATED
    mode: InputMode = InputMode.FILE
    content_type: str | None = None


class Output(_Model):
    uri: StorageUri = Field(description="where model.tar.gz, output data, metrics and logs go")


CHECKPOINT_PLACEHOLDERS = ("{job}", "{namespace}")


class Checkpoints(_Model):
    # Synced with local_path and restored before each attempt. {job} and {namespace}
    # in it are replaced by the job's (TrainingJob below), so every job gets its own;
    # a URI without {job} is shared: a job resumes from what an earlier one left there.
    uri: StorageUri
    local_path: str = Field(default="/opt/ml/checkpoints", pattern=r"^/")

    @field_validator("uri")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        rest = value
        for placeholder in CHECKPOINT_PLACEHOLDERS:
            rest = rest.replace(placeholder, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"unknown placeholder in {value!r} (known: {', '.join(CHECKPOINT_PLACEHOLDERS)})")
        return value


class MetricDefinition(_Model):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\s]+$")
    regex: str = Field(min_length=1, max_length=MAX_METRIC_REGEX_LENGTH,
                       description="RE2 syntax, applied to each log line; exactly one capture group")

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        compile_metric_regex(value)  # ValueError says why
        return value


class Stopping(_Model):
    max_runtime_seconds: int = Field(default=86400, ge=1, le=28 * 86400)
    grace_period_seconds: int = Field(default=30, ge=0, le=3600,
                                      description="time between SIGTERM and SIGKILL")


class Retry(_Model):
    max_attempts: int = Field(default=1, ge=1, le=100)


class TrainingJobSpec(_Model):
    image: str = Field(min_length=1, description="container image (or, for the process backend, a trainer source directory)")
    instance: Instance = Field(default_factory=Instance)
    hyperparameters: dict[Annotated[str, Field(pattern=HYPERPARAMETER_PATTERN)], WireString] = Field(default_factory=dict)
    inputs: list[InputChannel] = Field(default_factory=list)
    output: Output | None = Field(default=None, description="defaults to the backend's artifact store")
    checkpoints: Checkpoints | None = None
    metrics: list[MetricDefinition] = Field(default_factory=list, max_length=MAX_METRICS)
    stopping: Stopping = Field(default_factory=Stopping)
    retry: Retry = Field(default_factory=Retry)
    env: dict[EnvName, WireString] = Field(default_factory=dict)
    suspend: bool = Field(default=False, description="held back until an admission controller (e.g. Kueue) resumes it")

    @field_validator("inputs")
    @classmethod
    def _unique_channels(cls, inputs: list[InputChannel]) -> list[InputChannel]:
        seen: set[str] = set()
        for item in inputs:
            if item.channel in seen:
                raise ValueError(f"channel {item.channel!r} appears more than once")
            seen.add(item.channel)
        _no_collisions(seen, "SM_CHANNEL_", "channels")
        return inputs

    @field_validator("hyperparameters")
    @classmethod
    def _distinct_hyperparameter_variables(cls, hps: dict[str, str]) -> dict[str, str]:
        # lr-rate and lr_rate would both be SM_HP_LR_RATE: one would silently win.
        _no_collisions(hps, "SM_HP_", "hyperparameters")
        return hps

    @field_validator("output")
    @classmethod
    def _output_is_not_an_input(cls, output: Output | None, info: ValidationInfo) -> Output | None:
        # inputs is declared first, so it has been validated (and is absent if it failed).
        if output is None:
            return output
        for i, item in enumerate(info.data.get("inputs") or []):
            if item.uri.rstrip("/") == output.uri.rstrip("/"):
                raise ValueError(f"uri {output.uri!r} is also spec.inputs[{i}].uri; outputs would overwrite input data")
        return output

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters_fit_the_environment(cls, value: dict[str, str]) -> dict[str, str]:
        limits.check_hyperparameters(value)
        return value

    @field_validator("env")
    @classmethod
    def _env_fits_the_environment(cls, value: dict[str, str]) -> dict[str, str]:
        limits.check_env(value)
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[MetricDefinition]) -> list[MetricDefinition]:
        names = [m.name for m in metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(dupes)}")
        return metrics


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None


class Artifacts(_Model):
    model: str | None = None
    output: str | None = None
    checkpoints: str | None = None
    metrics: str | None = None
    logs: str | None = None


class AttemptRecord(_Model):
    """One attempt (one batch Job) of a job: how it ended and what it cost.
    ``Preempted``: its pods were evicted or preempted (a drained node, a
    scheduler preemption), which is not a failure of the user's code."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = Field(ge=1)
    outcome: Literal["Active", "Completed", "Failed", "Preempted", "Stopped"] = "Active"
    reason: str | None = None
    start_time: str | None = None  # its first pod got a node
    end_time: str | None = None
    billable_seconds: int = 0


class TrainingJobStatus(_Model):
    model_config = ConfigDict(extra="ignore")

    phase: Phase = Phase.PENDING
    message: str = ""
    failure_reason: str | None = None
    attempts: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    final_metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    start_time: str | None = None
    end_time: str | None = None
    billable_seconds: int = 0
    attempt_history: list[AttemptRecord] = Field(default_factory=list)


class TrainingJob(_Model):
    api_version: Literal["trainforge.dev/v1alpha1"] = API_VERSION
    kind: Literal["TrainingJob"] = KIND
    metadata: Metadata
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    @model_validator(mode="after")
    def _checkpoints_of_this_job(self) -> "TrainingJob":
        # Resolved once, here, so every reader (backends, stager, controller) sees the same URI.
        checkpoints = self.spec.checkpoints
        if checkpoints is not None and "{" in checkpoints.uri:
            checkpoints.uri = (checkpoints.uri.replace("{job}", self.metadata.name)
                               .replace("{namespace}", self.metadata.namespace))
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase), without empty status."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
