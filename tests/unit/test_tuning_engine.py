"""The tuning engine's decisions, driven by a simulated platform: trials are
records, a deterministic function of the hyperparameters plays the trainer."""

from __future__ import annotations

import math
from typing import Any

import pytest
from optuna.trial import TrialState as OptunaState

from trainforge.spec import parse_tuning_job
from trainforge.spec.tuning import Hyperband, Objective, TuningJobSpec
from trainforge.tuning import (
    TrialRecord, TrialState, best_trial, objective_series, plan, propose, rebuild_study,
)
from trainforge.tuning.rules import median_rule, rungs, successive_halving
from trainforge.tuning.space import from_wire, grid, to_wire

from tests.unit.test_tuning_spec import doc


def spec_of(**changes: Any) -> TuningJobSpec:
    return parse_tuning_job(doc(**changes)).spec


def score(hp: dict[str, str], step: int) -> float:
    """A smooth objective with its optimum near lr=0.05, batch 64, hidden 96."""
    lr, bs, hidden = float(hp["lr"]), int(hp["batch_size"]), int(hp["hidden"])
    quality = 1 - 0.1 * (math.log10(lr) - math.log10(0.05)) ** 2 - 0.02 * abs(bs - 64) / 32 - abs(hidden - 96) / 1000
    return quality * (1 - 0.5 ** step)


def simulate(spec: TuningJobSpec, epochs: int = 5, restart_every: int | None = None) -> list[TrialRecord]:
    """Run a whole tuning job: every pass, running trials advance one epoch,
    the plan is carried out. ``restart_every`` drops nothing (the engine holds
    no state), it is here to show that nothing needs to be kept."""
    trials: list[TrialRecord] = []
    for _ in range(1000):
        step_plan = plan(spec, trials)
        stops = dict(step_plan.stop)
        advanced = []
        for t in trials:
            if t.number in stops:
                t = TrialRecord(t.number, t.name, t.hyperparameters, TrialState.EARLY_STOPPED, t.series)
            elif t.state == TrialState.RUNNING:
                step = (t.last_step or 0) + 1
                series = {**t.series, step: score(dict(t.hyperparameters), step)}
                done = step >= epochs
                t = TrialRecord(t.number, t.name, t.hyperparameters,
                                TrialState.COMPLETED if done else TrialState.RUNNING, series,
                                series[step] if done else None)
            advanced.append(t)
        trials = advanced
        if step_plan.finished:
            break
        for hp in step_plan.new:
            n = len(trials)
            trials.append(TrialRecord(n, f"t-{n}", hp, TrialState.RUNNING))
    return trials


def test_same_seed_same_trials_and_a_different_seed_differs() -> None:
    a = simulate(spec_of(strategy={"type": "Bayesian", "seed": 11}))
    b = simulate(spec_of(strategy={"type": "Bayesian", "seed": 11}))
    c = simulate(spec_of(strategy={"type": "Bayesian", "seed": 12}))
    assert [t.hyperparameters for t in a] == [t.hyperparameters for t in b]
    assert [t.hyperparameters for t in a] != [t.hyperparameters for t in c]
    assert len(a) == 12 and all(t.state == TrialState.COMPLETED for t in a)


def test_random_trials_differ_from_each_other() -> None:
    trials = simulate(spec_of(strategy={"type": "Random", "seed": 1}))
    assert len({tuple(sorted(t.hyperparameters.items())) for t in trials}) == len(trials) == 12


def test_parallel_asks_in_one_pass_are_distinct() -> None:
    spec = spec_of(strategy={"type": "Bayesian", "seed": 5}, limits={"maxTrials": 12, "maxParallelTrials": 4})
    first = plan(spec, []).new
    assert len(first) == 4 and len({tuple(sorted(p.items())) for p in first}) == 4


def test_the_study_rebuilt_from_records_equals_the_live_one() -> None:
    spec = spec_of(strategy={"type": "Bayesian", "seed": 3})
    trials = simulate(spec)
    # One trial of each other kind on top of the completed ones.
    trials += [TrialRecord(12, "t-12", trials[0].hyperparameters, TrialState.FAILED),
               TrialRecord(13, "t-13", trials[1].hyperparameters, TrialState.EARLY_STOPPED, {1: 0.1, 2: 0.2}),
               TrialRecord(14, "t-14", trials[2].hyperparameters, TrialState.RUNNING, {1: 0.3})]
    study = rebuild_study(spec, trials)
    assert [t.number for t in study.trials] == list(range(15))
    for record, frozen in zip(trials, study.trials):
        assert to_wire(spec.parameters, frozen.params) == dict(record.hyperparameters)
        assert frozen.intermediate_values == dict(record.series)
    assert [t.state for t in study.trials[12:]] == [OptunaState.FAIL, OptunaState.PRUNED, OptunaState.RUNNING]
    assert [t.value for t in study.trials[:12]] == [t.final_objective for t in trials[:12]]
    best = best_trial(spec, trials)
    assert best is not None and study.best_trial.number == best.number
    assert study.best_value == best.final_objective


def test_tpe_finds_a_better_region_than_its_random_start() -> None:
    spec = spec_of(strategy={"type": "Bayesian", "seed": 2}, limits={"maxTrials": 30, "maxParallelTrials": 1})
    trials = simulate(spec)
    startup = max(3, min(10, 30 // 4))
    first = max(t.final_objective or 0 for t in trials[:startup])
    assert (best_trial(spec, trials).final_objective or 0) > first


def test_grid_enumerates_every_point_exactly_once_then_finishes() -> None:
    params = [{"name": "batch_size", "type": "Categorical", "values": ["32", "64"]},
              {"name": "hidden", "type": "Integer", "min": 16, "max": 48, "step": 16},
              {"name": "lr", "type": "Categorical", "values": ["0.01", "0.1"]}]
    spec = spec_of(parameters=params, strategy={"type": "Grid"}, limits={"maxTrials": 100, "maxParallelTrials": 5})
    trials = simulate(spec)
    points = sorted(tuple(sorted(t.hyperparameters.items())) for t in trials)
    expected = sorted(tuple(sorted(p.items())) for p in grid(spec.parameters))
    assert points == expected and len(points) == 2 * 3 * 2
    assert plan(spec, trials).finished == ("Completed", "all 12 trials finished")
    assert propose(spec, trials, 5) == []
    # A seed shuffles the order, the same way every time.
    assert grid(spec.parameters, seed=4) == grid(spec.parameters, seed=4) != grid(spec.parameters)


def test_reverse_log_and_round_trips() -> None:
    spec = spec_of(parameters=[{"name": "momentum", "type": "Continuous", "min": 0.9, "max": 0.9999,
                                "scale": "ReverseLog"}])
    values = [float(p["momentum"]) for p in propose(spec, [], 20)]
    assert all(0.9 <= v <= 0.9999 for v in values)
    assert from_wire(spec.parameters, {"momentum": "0.95"}) == {"momentum": pytest.approx(0.05)}
    # Outside today's range (a warm-start parent searched elsewhere): not usable.
    assert from_wire(spec.parameters, {"momentum": "0.5"}) is None
    assert from_wire(spec.parameters, {"other": "1"}) is None


def test_warm_start_trials_seed_the_study_but_not_the_budget() -> None:
    spec = spec_of(strategy={"type": "Bayesian", "seed": 9})
    parent = simulate(spec)
    study = rebuild_study(spec, [], warm=parent)
    assert len(study.trials) == len(parent)
    step_plan = plan(spec, [], warm=parent)
    assert len(step_plan.new) == 3 and step_plan.counts.completed == 0


def run(n: int, series: dict[int, float], state: TrialState = TrialState.RUNNING) -> TrialRecord:
    final = series[max(series)] if state == TrialState.COMPLETED else None
    return TrialRecord(n, f"t-{n}", {}, state, series, final)


def test_median_rule_stops_a_loser_once_enough_trials_reached_the_step() -> None:
    objective = Objective(metric="acc", type="Maximize")
    rule = spec_of(earlyStopping={"type": "Median", "minTrials": 3, "minSteps": 2}).early_stopping
    peers = [run(i, {1: 0.5, 2: 0.7, 3: 0.8}, TrialState.COMPLETED) for i in range(3)]
    loser = run(3, {1: 0.2, 2: 0.3})
    fine = run(4, {1: 0.6, 2: 0.75})
    early = run(5, {1: 0.1})            # before minSteps
    stops = median_rule([*peers, loser, fine, early], objective, rule)
    assert [n for n, _ in stops] == [3]
    assert "median rule" in stops[0][1] and "worse than the median 0.6" in stops[0][1]
    assert median_rule([peers[0], peers[1], loser], objective, rule) == []   # only 2 others
    minimize = Objective(metric="loss", type="Minimize")
    assert median_rule([*peers, loser], minimize, rule) == []   # lower is better: not a loser


def test_successive_halving_keeps_the_top_third_at_each_rung() -> None:
    settings = Hyperband(min_resource=1, max_resource=9, reduction_factor=3)
    assert rungs(settings) == [1, 3]
    objective = Objective(metric="acc", type="Maximize")
    finished = [run(i, {1: 0.1 * (i + 1), 3: 0.2 * (i + 1)}, TrialState.COMPLETED) for i in range(5)]
    leader = run(5, {1: 0.9})
    loser = run(6, {1: 0.15})
    stops = dict(successive_halving([*finished, leader, loser], objective, settings))
    assert set(stops) == {6}   # 7 reached rung 1: keep the best 2
    assert "not among the best 2 of 7" in stops[6]
    # The first trial at a rung is never starved.
    assert successive_halving([run(0, {1: 0.01})], objective, settings) == []


def test_hyperband_stops_losers_in_a_simulated_run() -> None:
    spec = spec_of(strategy={"type": "Hyperband", "seed": 4,
                             "hyperband": {"minResource": 1, "maxResource": 9, "reductionFactor": 3}},
                   limits={"maxTrials": 20, "maxParallelTrials": 4})
    trials = simulate(spec, epochs=9)
    stopped = [t for t in trials if t.state == TrialState.EARLY_STOPPED]
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    assert stopped and completed and len(trials) == 20
    assert all((t.last_step or 0) < 9 for t in stopped)


@pytest.mark.parametrize("changes, trials, expected", [
    ({"completion": {"targetValue": 0.9}}, [run(0, {1: 0.95}, TrialState.COMPLETED)],
     ("Completed", "trial 0 reached the target validation:accuracy 0.9 (0.95)")),
    ({"completion": {"noImprovementTrials": 2}},
     [run(0, {1: 0.9}, TrialState.COMPLETED), run(1, {1: 0.5}, TrialState.COMPLETED),
      run(2, {1: 0.4}, TrialState.FAILED)],
     ("Completed", "the best validation:accuracy did not improve over 2 trials")),
    ({"limits": {"maxFailedTrials": 1}}, [run(0, {}, TrialState.FAILED), run(1, {}, TrialState.FAILED)],
     ("Failed", "2 trials failed, more than limits.maxFailedTrials (1)")),
])
def test_completion_and_failure(changes: dict[str, Any], trials: list[TrialRecord],
                                expected: tuple[str, str]) -> None:
    result = plan(spec_of(**changes), trials)
    assert result.finished == expected and result.new == []


def test_a_finished_tuning_job_stops_what_runs_and_starts_nothing() -> None:
    spec = spec_of()
    trials = [run(0, {1: 0.5}), run(1, {1: 0.5}, TrialState.COMPLETED)]
    result = plan(spec, trials, stop_requested=True)
    assert result.finished == ("Stopped", "stopped on request")
    assert result.stop == [(0, "tuning job ended: stopped on request")] and result.new == []
    timed_out = plan(spec, trials, elapsed_seconds=spec.limits.max_runtime_seconds)
    assert timed_out.finished is not None and "maxRuntimeSeconds" in timed_out.finished[1]


def test_parallelism_and_budget_bound_new_trials() -> None:
    spec = spec_of(limits={"maxTrials": 5, "maxParallelTrials": 3})
    assert len(plan(spec, []).new) == 3
    trials = [run(0, {1: 0.5}), run(1, {1: 0.5}), TrialRecord(2, "t-2", {}, TrialState.PENDING)]
    assert plan(spec, trials).new == []
    done = [run(i, {1: 0.5}, TrialState.COMPLETED) for i in range(4)]
    assert len(plan(spec, done).new) == 1


def test_a_trial_whose_hosts_are_released_leaves_room_but_still_counts_as_active() -> None:
    """A trial whose trainer ended (pods Succeeded, results still being read)
    frees its slot at once; it is still active: not in the counts' completed,
    and the tuning job does not finish before it does."""
    from dataclasses import replace

    spec = spec_of(limits={"maxTrials": 4, "maxParallelTrials": 2})
    trials = [run(0, {1: 0.5}), run(1, {1: 0.5})]
    assert plan(spec, trials).new == []
    freed = [replace(trials[0], released=True), trials[1]]
    step = plan(spec, freed)
    assert len(step.new) == 1 and step.counts.running == 2 and step.finished is None
    both = spec_of(limits={"maxTrials": 8, "maxParallelTrials": 2})
    assert len(plan(both, [replace(t, released=True) for t in trials]).new) == 2
    last = [run(i, {1: 0.5}, TrialState.COMPLETED) for i in range(3)] + [replace(trials[1], number=3, released=True)]
    assert plan(spec, last).finished is None, "not finished while a released trial's results are out"


def test_objective_series_from_metric_records() -> None:
    records = [{"name": "acc", "value": 0.5, "step": 1}, {"name": "loss", "value": 2.0},
               {"name": "acc", "value": "0.7", "step": 2}, {"name": "acc", "value": "bad"},
               {"name": "acc", "value": 0.8}]
    assert objective_series(records, "acc") == {1: 0.5, 2: 0.7, 3: 0.8}


def test_random_proposals_skip_the_rebuild_and_draw_the_same() -> None:
    """The random sampler reads no history: proposing without rebuilding the
    study (what keeps a decision fast at 1,000 trials) draws exactly what a
    rebuilt study of every trial draws."""
    spec = spec_of(strategy={"type": "Random", "seed": 9}, limits={"maxTrials": 40, "maxParallelTrials": 4})
    trials = simulate(spec_of(strategy={"type": "Random", "seed": 4}, limits={"maxTrials": 30}))
    from trainforge.tuning.space import distributions

    study = rebuild_study(spec, trials)  # as every strategy but Random does it
    rebuilt = [to_wire(spec.parameters, study.ask(distributions(spec.parameters)).params) for _ in range(4)]
    assert propose(spec, trials, 4) == rebuilt
    assert propose(spec, trials[:-1], 4) != rebuilt  # the seed counts the trials recorded


@pytest.mark.parametrize("strategy", [
    {"type": "Bayesian", "seed": 3},
    {"type": "Hyperband", "seed": 3, "hyperband": {"minResource": 1, "maxResource": 5, "reductionFactor": 3}},
])
def test_a_held_study_proposes_exactly_what_a_full_rebuild_does(strategy: dict[str, Any]) -> None:
    """The driver's StudyMemo adds only what changed between decisions (new
    trials, new intermediate values, trials that ended); at every decision of
    a whole simulated tuning job it draws what a study rebuilt from every
    record draws, and it rebuilt only when it had to."""
    from trainforge.tuning.engine import StudyMemo

    spec = spec_of(strategy=strategy, limits={"maxTrials": 20, "maxParallelTrials": 4})
    memo = StudyMemo()
    trials: list[TrialRecord] = []
    decisions = 0
    for pass_no in range(400):
        full = plan(spec, trials)
        held = plan(spec, trials, memo=memo)
        assert held.new == full.new and held.stop == full.stop
        decisions += bool(full.new)
        stops = dict(full.stop)
        advanced = []
        for t in trials:
            if t.number in stops:
                t = TrialRecord(t.number, t.name, t.hyperparameters, TrialState.EARLY_STOPPED, t.series)
            elif t.state == TrialState.RUNNING and (t.number + pass_no) % 3:  # trials advance unevenly
                step = (t.last_step or 0) + 1
                series = {**t.series, step: score(dict(t.hyperparameters), step)}
                done = step >= 5
                t = TrialRecord(t.number, t.name, t.hyperparameters,
                                TrialState.COMPLETED if done else TrialState.RUNNING, series,
                                series[step] if done else None)
            advanced.append(t)
        trials = advanced + [TrialRecord(len(advanced) + i, f"t-{len(advanced) + i}", hp, TrialState.RUNNING)
                             for i, hp in enumerate(full.new)]
        if full.finished:
            break
    assert full.finished is not None and len(trials) == 20 and decisions > 5
    assert memo.rebuilds == 1
    # Another spec, then a record that changed what cannot change (a finished
    # trial's value): each rebuilds, and the draws still agree.
    more = spec_of(strategy=strategy, limits={"maxTrials": 24, "maxParallelTrials": 4})
    assert propose(more, trials, 2, memo=memo) == propose(more, trials, 2)
    assert memo.rebuilds == 2
    first = next(t.number for t in trials if t.state == TrialState.COMPLETED)
    changed = [replace_value(t, 0.123) if t.number == first else t for t in trials]
    assert propose(more, changed, 2, memo=memo) == propose(more, changed, 2)
    assert memo.rebuilds == 3


def replace_value(trial: TrialRecord, value: float) -> TrialRecord:
    from dataclasses import replace

    return replace(trial, final_objective=value)
