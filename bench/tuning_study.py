"""One Bayesian (TPE) decision at scale: the study rebuilt from every record
(what a driver did before) against the study held between decisions
(``StudyMemo``: only what changed is added). Prints numbers, asserts nothing.

A simulated tuning job of ``--trials`` records, ``--parallel`` running at a
time. At each checkpoint (a quarter, half, three quarters, all of the trials)
the held study is first brought level with the records, then ``--decisions``
decisions follow as the controller makes them: one running trial ends (its
series and final objective recorded), the plan adds one trial. Each decision
is timed both ways; the draws are compared (they must be the same).

    .venv/bin/python bench/tuning_study.py [--trials 1000 --parallel 64 --decisions 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from trainforge.spec import parse_tuning_job
from trainforge.tuning import TrialRecord, TrialState, plan, propose
from trainforge.tuning.engine import StudyMemo


def spec_of(trials: int, parallel: int):  # type: ignore[no-untyped-def]
    return parse_tuning_job({
        "apiVersion": "trainforge.dev/v1alpha1", "kind": "TuningJob", "metadata": {"name": "bench"},
        "spec": {
            "trainingJobTemplate": {"image": "registry.example.com/bench:1",
                                    "metrics": [{"name": "acc", "regex": "acc=([0-9.]+)"}]},
            "objective": {"metric": "acc", "type": "Maximize"},
            "parameters": [{"name": "lr", "type": "Continuous", "min": 1e-4, "max": 1e-1, "scale": "Log"},
                           {"name": "batch_size", "type": "Integer", "min": 16, "max": 256, "step": 16},
                           {"name": "hidden", "type": "Categorical", "values": ["32", "64", "128", "256"]}],
            "strategy": {"type": "Bayesian", "seed": 1},
            "limits": {"maxTrials": trials + 1000, "maxParallelTrials": parallel},
        }}).spec


def score(hp: dict[str, str], step: int) -> float:
    lr, bs = float(hp["lr"]), int(hp["batch_size"])
    quality = 1 - 0.1 * (math.log10(lr) + 1.5) ** 2 - 0.02 * abs(bs - 64) / 32 - abs(int(hp["hidden"]) - 128) / 1000
    return quality * (1 - 0.5 ** step)


def finished(number: int, hp: dict[str, str]) -> TrialRecord:
    series = {s: score(hp, s) for s in (1, 2, 3)}
    return TrialRecord(number, f"t-{number}", hp, TrialState.COMPLETED, series, series[3])


def running(number: int, hp: dict[str, str]) -> TrialRecord:
    return TrialRecord(number, f"t-{number}", hp, TrialState.RUNNING, {1: score(hp, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--decisions", type=int, default=5)
    args = parser.parse_args()
    spec = spec_of(args.trials, args.parallel)
    random_spec = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"type": "Random"})})
    pool = propose(random_spec, [], args.trials + 4 * args.decisions)  # the trials' hyperparameters

    print(f"== TPE decisions: {args.parallel} trials running, the rest finished; "
          f"{args.decisions} decisions per checkpoint ==")
    print(f"{'records':>8} {'rebuild p50':>12} {'max':>8} {'held p50':>10} {'max':>8} {'speed-up':>9}  same draws")
    memo = StudyMemo()
    for n in sorted({max(args.parallel + 1, args.trials * q // 4) for q in (1, 2, 3, 4)}):
        trials = [finished(i, pool[i]) if i < n - args.parallel else running(i, pool[i]) for i in range(n)]
        memo.study(spec, trials)  # level with the records, as after the previous decision
        rebuilds = memo.rebuilds
        full_times, held_times, same = [], [], True
        for k in range(args.decisions):
            ended = n - args.parallel + k  # the oldest running trial ends
            trials[ended] = finished(ended, pool[ended])
            t0 = time.perf_counter()
            full = plan(spec, trials)
            t1 = time.perf_counter()
            held = plan(spec, trials, memo=memo)
            t2 = time.perf_counter()
            full_times.append(t1 - t0)
            held_times.append(t2 - t1)
            same = same and full.new == held.new
            trials.append(replace(running(len(trials), pool[len(trials)]), hyperparameters=full.new[0])
                          if full.new else running(len(trials), pool[len(trials)]))
        same = same and memo.rebuilds == rebuilds
        f50, h50 = statistics.median(full_times), statistics.median(held_times)
        print(f"{n:>8} {f50 * 1000:>10.0f}ms {max(full_times) * 1000:>6.0f}ms {h50 * 1000:>8.0f}ms "
              f"{max(held_times) * 1000:>6.0f}ms {f50 / h50:>8.1f}x  {'yes' if same else 'NO'}")
    print(f"(held study rebuilt {memo.rebuilds} time(s): once per checkpoint, whose history is new; "
          "never between the decisions timed)")


if __name__ == "__main__":
    main()
