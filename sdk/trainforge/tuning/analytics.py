"""The trial table as a pandas DataFrame, with SageMaker's column names (so
notebooks written for ``HyperparameterTuningJobAnalytics`` read it), plus
what trainforge knows beyond them: trial number, billable seconds and cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._time import parse_time
from ..instances import lookup
from ..spec import TrainingJob
from ..spec.tuning import TuningJobSpec

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["TrialNumber", "TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime",
           "TrainingEndTime", "TrainingElapsedTimeSeconds", "BillableSeconds", "Cost", "StopReason"]


def _cost(job: TrainingJob, billable_seconds: int) -> float:
    try:
        price = lookup(job.spec.instance.type).hourly_price
    except KeyError:
        return float("nan")
    return round(price * job.spec.instance.count * billable_seconds / 3600.0, 6)


def trials_frame(spec: TuningJobSpec, trials: Mapping[int, TrainingJob],
                 stop_reasons: Mapping[int, str] | None = None) -> "pd.DataFrame":
    """One row per trial, in trial order: a column per tuned hyperparameter
    (typed as the range is), then COLUMNS. A trial that did not complete has
    no FinalObjectiveValue (NaN, never zero)."""
    import pandas as pd

    stop_reasons = stop_reasons or {}
    rows = []
    for number, job in sorted(trials.items()):
        status = job.status
        row: dict[str, object] = {}
        for p in spec.parameters:
            raw = job.spec.hyperparameters.get(p.name)
            if raw is None:
                row[p.name] = None
            elif p.type.value == "Integer":
                row[p.name] = int(float(raw))
            elif p.type.value == "Continuous":
                row[p.name] = float(raw)
            else:
                row[p.name] = raw
        phase = status.phase.value if status else "Pending"
        final = status.final_metrics.get(spec.objective.metric) if status and phase == "Completed" else None
        start = parse_time(status.start_time) if status and status.start_time else None
        end = parse_time(status.end_time) if status and status.end_time else None
        billable = status.billable_seconds if status else 0
        row.update({
            "TrialNumber": number, "TrainingJobName": job.name, "TrainingJobStatus": phase,
            "FinalObjectiveValue": final, "TrainingStartTime": start, "TrainingEndTime": end,
            "TrainingElapsedTimeSeconds": (end - start).total_seconds() if start and end else None,
            "BillableSeconds": billable, "Cost": _cost(job, billable),
            "StopReason": stop_reasons.get(number) or (status.failure_reason if status and phase != "Completed"
                                                       else None),
        })
        rows.append(row)
    columns = [p.name for p in spec.parameters] + COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    frame["FinalObjectiveValue"] = frame["FinalObjectiveValue"].astype("float64")
    frame["TrainingElapsedTimeSeconds"] = frame["TrainingElapsedTimeSeconds"].astype("float64")
    for column in ("TrainingStartTime", "TrainingEndTime"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
