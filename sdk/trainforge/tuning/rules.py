"""Early stopping, as pure functions over the recorded trials: which running
trials should end now, and why. Judged afresh on every pass from the series
alone, so a restarted driver reaches the same verdicts."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from ..spec.tuning import EarlyStopping, Hyperband, Objective
from .records import TrialRecord, TrialState


def _best_so_far(series: Mapping[int, float], upto: int, objective: Objective) -> float | None:
    values = [v for s, v in series.items() if s <= upto]
    if not values:
        return None
    return max(values) if objective.better(1.0, 0.0) else min(values)


def _running_average(trial: TrialRecord, upto: int) -> float | None:
    values = [v for s, v in trial.series.items() if s <= upto]
    return sum(values) / len(values) if values else None


def median_rule(trials: Sequence[TrialRecord], objective: Objective,
                rule: EarlyStopping) -> list[tuple[int, str]]:
    """Stop a running trial whose best objective so far is worse than the
    median of the other trials' running averages up to the same step
    (SageMaker's rule); only once ``min_trials`` others reached that step."""
    stops: list[tuple[int, str]] = []
    for trial in trials:
        if trial.state != TrialState.RUNNING or trial.last_step is None:
            continue
        # Judged at the latest step that min_trials others have reached too: parallel
        # trials run in near lockstep, and one a step ahead must not escape the rule.
        reached = sorted(((o.last_step or 0) for o in trials if o.number != trial.number), reverse=True)
        if len(reached) < rule.min_trials:
            continue
        step = min(trial.last_step, reached[rule.min_trials - 1])
        if step < rule.min_steps:
            continue
        others = [avg for other in trials if other.number != trial.number and (other.last_step or 0) >= step
                  for avg in [_running_average(other, step)] if avg is not None]
        if len(others) < rule.min_trials:
            continue
        median = statistics.median(others)
        best = _best_so_far(trial.series, step, objective)
        if best is not None and objective.better(median, best):
            stops.append((trial.number, f"early stopping (median rule): best {objective.metric} {best:.6g} "
                                        f"at step {step} is worse than the median {median:.6g} of "
                                        f"{len(others)} other trials"))
    return stops


def rungs(settings: Hyperband) -> list[int]:
    """The steps at which successive halving judges: min * eta**k below max."""
    out, step = [], settings.min_resource
    while step < settings.max_resource:
        out.append(step)
        step *= settings.reduction_factor
    return out


def _value_at(trial: TrialRecord, step: int) -> float | None:
    """The objective at ``step``, or the latest one before it."""
    seen = [s for s in trial.series if s <= step]
    return trial.series[max(seen)] if seen else None


def successive_halving(trials: Sequence[TrialRecord], objective: Objective,
                       settings: Hyperband) -> list[tuple[int, str]]:
    """Asynchronous successive halving: a running trial that has reached rung
    r (but not the next) goes on only if its value at r is among the best
    1/reduction_factor of every trial that reached r (at least the best one
    always goes on, so the first trials are never starved)."""
    stops: list[tuple[int, str]] = []
    levels = rungs(settings)
    eta = settings.reduction_factor
    for trial in trials:
        step = trial.last_step
        if trial.state != TrialState.RUNNING or step is None:
            continue
        reached = [r for r in levels if r <= step]
        if not reached:
            continue
        rung = reached[-1]
        mine = _value_at(trial, rung)
        if mine is None:
            continue
        peers = [v for other in trials if (other.last_step or 0) >= rung
                 for v in [_value_at(other, rung)] if v is not None]
        keep = max(1, len(peers) // eta)
        ranked = sorted(peers, reverse=objective.better(1.0, 0.0))
        threshold = ranked[keep - 1]
        if objective.better(threshold, mine):
            stops.append((trial.number, f"early stopping (successive halving): {objective.metric} {mine:.6g} at "
                                        f"step {rung} is not among the best {keep} of {len(peers)} trials "
                                        f"that reached it"))
    return stops
