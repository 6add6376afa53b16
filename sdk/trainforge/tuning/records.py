"""What the engine knows of a trial: its number, hyperparameters, state and
objective series, as observed from the platform (a local job's folder, a
TrainingJob and its archived metrics). Nothing else is remembered between
decisions, so a restarted driver decides exactly as the one before it."""

from __future__ import annotations

import math

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TrialState(str, Enum):
    PENDING = "Pending"            # submitted, not running yet (queued, staging)
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    EARLY_STOPPED = "EarlyStopped"  # stopped by the tuning job's early-stopping rule
    STOPPED = "Stopped"            # stopped for any other reason (user, limits)

    @property
    def active(self) -> bool:
        return self in (TrialState.PENDING, TrialState.RUNNING)


@dataclass(frozen=True)
class TrialRecord:
    number: int
    name: str
    hyperparameters: Mapping[str, str]
    state: TrialState
    series: Mapping[int, float] = field(default_factory=dict)  # step -> objective value
    final_objective: float | None = None   # completed trials: the objective's last value
    # Its trainer has ended and its hosts are free; its results are still being
    # collected (log archive, metric fold). Still active, but it holds no slot of
    # maxParallelTrials: the next trial need not wait for the bookkeeping.
    released: bool = False

    @property
    def last_step(self) -> int | None:
        return max(self.series) if self.series else None


def _field(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)


def objective_series(records: Iterable[Any], metric: str) -> dict[int, float]:
    """Metric records (``MetricRecord`` or ``{"name", "value", "step"?}``) ->
    the objective per step. Records without a step take the next step after
    the last one seen, so a regex that matches once per epoch makes a series too."""
    series: dict[int, float] = {}
    step = 0
    for record in records:
        if _field(record, "name") != metric:
            continue
        try:
            value = float(_field(record, "value"))
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        raw_step = _field(record, "step")
        step = int(raw_step) if isinstance(raw_step, (int, float)) and not isinstance(raw_step, bool) else step + 1
        series[step] = value
    return series
