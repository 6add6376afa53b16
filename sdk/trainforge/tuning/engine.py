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
from typing import Any

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


@dataclass(frozen=True)
class _Entry:
    """What one trial of a study was made from."""

    params: dict[str, Any]
    state: OptunaState
    value: float | None
    intermediate: dict[int, float]


def _entries(spec: TuningJobSpec, trials: Sequence[TrialRecord], warm: Sequence[TrialRecord]) -> list[_Entry]:
    """``warm`` (parents' trials, when they fit today's ranges) then ``trials``
    in number order, as the study holds them."""
    out = []
    for trial in [*warm, *sorted(trials, key=lambda t: t.number)]:
        params = from_wire(spec.parameters, trial.hyperparameters)
        if params is None:
            continue
        state = _optuna_state(trial)
        out.append(_Entry(params, state, trial.final_objective if state == OptunaState.COMPLETE else None,
                          {s: v for s, v in trial.series.items() if math.isfinite(v)}))
    return out


def _add(study: optuna.Study, dists: dict[str, Any], entry: _Entry) -> None:
    study.add_trial(create_trial(params=entry.params, distributions=dists, state=entry.state, value=entry.value,
                                 intermediate_values=entry.intermediate))


def _new_study(spec: TuningJobSpec, recorded: int) -> optuna.Study:
    direction = "maximize" if spec.objective.type == ObjectiveType.MAXIMIZE else "minimize"
    return optuna.create_study(direction=direction, sampler=_sampler(spec, recorded))


def rebuild_study(spec: TuningJobSpec, trials: Sequence[TrialRecord],
                  warm: Sequence[TrialRecord] = ()) -> optuna.Study:
    """An in-memory study holding ``warm`` (parents' trials, when they fit
    today's ranges) then ``trials`` in number order."""
    study = _new_study(spec, len(trials))
    dists = distributions(spec.parameters)
    for entry in _entries(spec, trials, warm):
        _add(study, dists, entry)
    return study


class StudyMemo:
    """One tuning job's study kept between decisions, so a decision adds only
    what changed instead of rebuilding a study of every trial (Optuna copies
    each trial it is handed: seconds per decision at 1,000 trials on a busy
    machine).

    Each decision brings the held study level with the records: new trials
    are added; a trial still running in the study gets its new intermediate
    values and, once it has ended, its state and value (Optuna lets a running
    trial change, never a finished one). Anything else -- a finished trial
    that changed, records out of order, another spec -- rebuilds it whole. The
    study then holds what :func:`rebuild_study` would build, and proposals
    are the same draws (a unit test and ``bench/tuning_study.py``
    compare them); a driver that loses its memo loses nothing but time."""

    def __init__(self) -> None:
        self._storage: optuna.storages.InMemoryStorage | None = None
        self._study: optuna.Study | None = None
        self._key: str | None = None
        self._held: list[tuple[int, _Entry]] = []  # (Optuna trial id, what it was made from)
        self.rebuilds = 0

    def study(self, spec: TuningJobSpec, trials: Sequence[TrialRecord],
              warm: Sequence[TrialRecord] = ()) -> optuna.Study:
        entries = _entries(spec, trials, warm)
        key = spec.model_dump_json()
        if self._study is None or key != self._key or not self._level(entries):
            self.rebuilds += 1
            self._storage = optuna.storages.InMemoryStorage()
            direction = "maximize" if spec.objective.type == ObjectiveType.MAXIMIZE else "minimize"
            self._study = optuna.create_study(storage=self._storage, direction=direction)
            self._key, self._held = key, []
        assert self._study is not None
        dists = distributions(spec.parameters)
        for entry in entries[len(self._held):]:
            _add(self._study, dists, entry)
            self._held.append((self._study.get_trials(deepcopy=False)[-1]._trial_id, entry))
        self._study.sampler = _sampler(spec, len(trials))
        return self._study

    def _level(self, entries: list[_Entry]) -> bool:
        """Bring the trials held with ``entries``; False when only a rebuild can."""
        assert self._storage is not None
        if len(entries) < len(self._held):
            return False
        changes = []
        for (trial_id, held), entry in zip(self._held, entries):
            if held == entry:
                continue
            grown = all(entry.intermediate.get(s) == v for s, v in held.intermediate.items())
            if held.state != OptunaState.RUNNING or held.params != entry.params or not grown:
                return False
            changes.append((trial_id, held, entry))
        for trial_id, held, entry in changes:
            for step, value in entry.intermediate.items():
                if step not in held.intermediate:
                    self._storage.set_trial_intermediate_value(trial_id, step, value)
            if entry.state != OptunaState.RUNNING:
                self._storage.set_trial_state_values(trial_id, entry.state,
                                                     None if entry.value is None else [entry.value])
        self._held = [(trial_id, entry) for (trial_id, _), entry in zip(self._held, entries)]
        return True


def propose(spec: TuningJobSpec, trials: Sequence[TrialRecord], count: int,
            warm: Sequence[TrialRecord] = (), memo: StudyMemo | None = None) -> list[dict[str, str]]:
    """The hyperparameters of the next ``count`` trials (fewer when a grid
    runs out). Deterministic for a seeded spec and the same records; with a
    ``memo`` (a driver's, per tuning job) the same draws, sooner."""
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
    elif memo is not None:
        study = memo.study(spec, trials, warm)
    else:
        study = rebuild_study(spec, trials, warm)
    dists = distributions(spec.parameters)
    out, asked = [], []
    for _ in range(count):
        asked.append(study.ask(dists))  # stays RUNNING in the study: the next ask sees it
        out.append(to_wire(spec.parameters, asked[-1].params))
    if memo is not None:
        # Held on, the asks must not count next time (their trials come back as
        # records): Failed trials are what every sampler here skips.
        for trial in asked:
            study.tell(trial, state=OptunaState.FAIL)
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
         stop_requested: bool = False, warm: Sequence[TrialRecord] = (), memo: StudyMemo | None = None) -> Plan:
    """The whole decision for one pass. Pure: same inputs, same plan (a
    ``memo`` makes it faster, not different)."""
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
    result.new = propose(spec, trials, room, warm, memo)
    return result
