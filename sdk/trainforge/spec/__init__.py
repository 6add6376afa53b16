"""The TrainingJob and TuningJob specs: models, loading with field-path errors, schemas."""

from .loading import (
    check_job_name, field_path, load_job, load_tuning_job, parse_job, parse_text, parse_tuning_job,
    parse_tuning_text,
)
from .models import (
    API_VERSION, KIND, Artifacts, Checkpoints, Condition, Distribution, InputChannel,
    InputMode, Instance, Metadata, MetricDefinition, Output, Phase, Retry, Stopping,
    TrainingJob, TrainingJobSpec, TrainingJobStatus,
)
from .schema import json_schema, openapi_schema
from .tuning import (
    TUNING_KIND, BestTrial, Completion, EarlyStopping, EarlyStoppingType, Hyperband, Limits, Objective,
    ObjectiveType, Parameter, ParameterType, Scale, Strategy, StrategyType, TrialCounts, TuningJob,
    TuningJobSpec, TuningJobStatus, WarmStart,
)

__all__ = [
    "API_VERSION", "KIND", "Artifacts", "Checkpoints", "Condition", "Distribution",
    "InputChannel", "InputMode", "Instance", "Metadata", "MetricDefinition", "Output",
    "Phase", "Retry", "Stopping", "TrainingJob", "TrainingJobSpec", "TrainingJobStatus",
    "check_job_name", "field_path", "json_schema", "load_job", "openapi_schema", "parse_job", "parse_text",
    "TUNING_KIND", "BestTrial", "Completion", "EarlyStopping", "EarlyStoppingType", "Hyperband", "Limits",
    "Objective", "ObjectiveType", "Parameter", "ParameterType", "Scale", "Strategy", "StrategyType",
    "TrialCounts", "TuningJob", "TuningJobSpec", "TuningJobStatus", "WarmStart",
    "load_tuning_job", "parse_tuning_job", "parse_tuning_text",
]
