"""The one decision both tuning drivers make, over and over: given the spec
and the trials recorded so far, which hyperparameters to try next, which
running trials to stop, and whether the tuning job is finished.

The search runs on Optuna through ask/tell, but its study is rebuilt from
the records on every decision (in memory, milliseconds for a few thousand
trials), so neither the local supervisor nor the controller holds state that
a restart would lose. Samplers are seeded from the spec's seed and the number
of trials already recorded: the same seed and history give the same trials.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState as OptunaState
from optuna.trial import create_trial

from ..spec.tuning import (
    EarlyStoppingType, ObjectiveType, StrategyType, TrialCounts, TuningJobSpec,
)
from .records import TrialRecord, TrialState
from .rules import median_rule, successive_halving
from .space import distributions, from_wire, grid, to_wire

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _random(spec: TuningJobSpec) -> bool:
    strategy = spec.strategy
    return strategy.type == StrategyType.RANDOM or (
        strategy.type == StrategyType.HYPERBAND and strategy.hyperband is not None
        and strategy.hyperband.sampler == "Random")


def _sampler(spec: TuningJobSpec, recorded: int) -> optuna.samplers.BaseSampler:
    strategy = spec.strategy
    seed = None if strategy.seed is None else (strategy.seed * 1_000_003 + recorded) % 2**32
    if _random(spec):
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(3, min(10, spec.limits.max_trials // 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: trials still running count as bad guesses, so parallel
        # asks spread out instead of piling onto the same point.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                          constant_liar=True)


def _optuna_state(trial: TrialRecord) -> OptunaState:
    if trial.state == TrialState.COMPLETED:
        return OptunaState.COMPLETE if trial.final_objective is not None else OptunaState.FAIL
    if trial.state == TrialState.FAILED:
        return OptunaState.FAIL
    if trial.state.active:
        return OptunaState.RUNNING
    # Stopped trials teach the sampler through their intermediate values.
    return OptunaState.PRUNED


def rebuild_study(spec: TuningJobSpec, trials: Sequence[TrialRecord],
                  warm: Sequence[TrialRecord] = ()) -> optuna.Study:
    """An in-memory study holding ``warm`` (parents' trials, when they fit
    today's ranges) then ``trials`` in number order."""
    direction = "maximize" if spec.objective.type == ObjectiveType.MAXIMIZE else "minimize"
    study = optuna.create_study(direction=direction, sampler=_sampler(spec, len(trials)))
    dists = distributions(spec.parameters)
    for trial in [*warm, *sorted(trials, key=lambda t: t.number)]:
        params = from_wire(spec.parameters, trial.hyperparameters)
        if params is None:
            continue
        state = _optuna_state(trial)
        study.add_trial(create_trial(
            params=params, distributions=dists, state=state,
            value=trial.final_objective if state == OptunaState.COMPLETE else None,
            intermediate_values={s: v for s, v in trial.series.items() if math.isfinite(v)},
        ))
    return study


def propose(spec: TuningJobSpec, trials: Sequence[TrialRecord], count: int,
            warm: Sequence[TrialRecord] = ()) -> list[dict[str, str]]:
    """The hyperparameters of the next ``count`` trials (fewer when a grid
    runs out). Deterministic for a seeded spec and the same records."""
    if count <= 0:
        return []
    if spec.strategy.type == StrategyType.GRID:
        tried = {tuple(sorted(t.hyperparameters.items())) for t in trials}
        fresh = [p for p in grid(spec.parameters, spec.strategy.seed) if tuple(sorted(p.items())) not in tried]
        return fresh[:count]
    if _random(spec):
        # The random sampler reads no history (its seed already counts the
        # trials): the same draws without rebuilding a study of every trial,
        # which cost ~2 s per decision at 1,000 trials.
        study = rebuild_study(spec, [])
        study.sampler = _sampler(spec, len(trials))
    else:
        study = rebuild_study(spec, trials, warm)
    dists = distributions(spec.parameters)
    out = []
    for _ in range(count):
        asked = study.ask(dists)  # stays RUNNING in the study: the next ask sees it
        out.append(to_wire(spec.parameters, asked.params))
    return out


def best_trial(spec: TuningJobSpec, trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the best final objective (the earliest on ties)."""
    best: TrialRecord | None = None
    for trial in sorted(trials, key=lambda t: t.number):
        value = trial.final_objective
        if trial.state != TrialState.COMPLETED or value is None or not math.isfinite(value):
            continue
        if best is None or spec.objective.better(value, best.final_objective):  # type: ignore[arg-type]
            best = trial
    return best


def counts(trials: Sequence[TrialRecord]) -> TrialCounts:
    c = TrialCounts()
    for trial in trials:
        if trial.state == TrialState.PENDING:
            c.pending += 1
        elif trial.state == TrialState.RUNNING:
            c.running += 1
        elif trial.state == TrialState.COMPLETED:
            c.completed += 1
        elif trial.state == TrialState.FAILED:
            c.failed += 1
        else:
            c.stopped += 1
    return c


def _no_improvement_for(spec: TuningJobSpec, trials: Sequence[TrialRecord]) -> int:
    """Finished trials since the best one finished (by trial number)."""
    best = best_trial(spec, trials)
    if best is None:
        return 0
    return sum(1 for t in trials if not t.state.active and t.number > best.number)


@dataclass
class Plan:
    """What a driver does now. ``finished`` is (phase, message) once the
    tuning job is over: stop what runs, start nothing."""

    new: list[dict[str, str]] = field(default_factory=list)
    stop: list[tuple[int, str]] = field(default_factory=list)
    finished: tuple[str, str] | None = None
    counts: TrialCounts = field(default_factory=TrialCounts)
    best: TrialRecord | None = None


def _verdict(spec: TuningJobSpec, trials: Sequence[TrialRecord], best: TrialRecord | None,
             elapsed_seconds: float, stop_requested: bool) -> tuple[str, str] | None:
    limits, completion = spec.limits, spec.completion
    failed = sum(1 for t in trials if t.state == TrialState.FAILED)
    if failed > limits.max_failed_trials:
        return "Failed", f"{failed} trials failed, more than limits.maxFailedTrials ({limits.max_failed_trials})"
    if stop_requested:
        return "Stopped", "stopped on request"
    if completion.target_value is not None and best is not None and best.final_objective is not None \
            and not spec.objective.better(completion.target_value, best.final_objective):
        return "Completed", (f"trial {best.number} reached the target {spec.objective.metric} "
                             f"{completion.target_value:g} ({best.final_objective:.6g})")
    if completion.no_improvement_trials is not None \
            and _no_improvement_for(spec, trials) >= completion.no_improvement_trials:
        return "Completed", (f"the best {spec.objective.metric} did not improve over "
                             f"{completion.no_improvement_trials} trials")
    if elapsed_seconds >= limits.max_runtime_seconds:
        return "Completed", f"limits.maxRuntimeSeconds ({limits.max_runtime_seconds}) reached"
    budget = limits.max_trials
    if spec.strategy.type == StrategyType.GRID:
        budget = min(budget, len(grid(spec.parameters)))
    if len(trials) >= budget and not any(t.state.active for t in trials):
        return "Completed", f"all {len(trials)} trials finished"
    return None


def plan(spec: TuningJobSpec, trials: Sequence[TrialRecord], elapsed_seconds: float = 0.0,
         stop_requested: bool = False, warm: Sequence[TrialRecord] = ()) -> Plan:
    """The whole decision for one pass. Pure: same inputs, same plan."""
    best = best_trial(spec, trials)
    result = Plan(counts=counts(trials), best=best)
    result.finished = _verdict(spec, trials, best, elapsed_seconds, stop_requested)
    if result.finished is not None:
        reason = result.finished[1]
        result.stop = [(t.number, f"tuning job ended: {reason}") for t in trials if t.state.active]
        return result
    if spec.strategy.type == StrategyType.HYPERBAND and spec.strategy.hyperband is not None:
        result.stop = successive_halving(trials, spec.objective, spec.strategy.hyperband)
    elif spec.early_stopping.type == EarlyStoppingType.MEDIAN:
        result.stop = median_rule(trials, spec.objective, spec.early_stopping)
    stopping = {number for number, _ in result.stop}
    active = sum(1 for t in trials if t.state.active and not t.released and t.number not in stopping)
    room = min(spec.limits.max_parallel_trials - active, spec.limits.max_trials - len(trials))
    result.new = propose(spec, trials, room, warm)
    return result
