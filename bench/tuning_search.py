"""Search efficiency of the tuning strategies on the digits network.

Every method searches the same space (lr log-uniform, batch size, hidden
units), with the same parallelism (4 trials at a time) and the same per-trial
schedule (up to 9 epochs), on the same data; each is run for several seeds.
Trials train for real (the digits MLP of containers/examples/digits-pytorch,
PyTorch on the CPU, in this process), one epoch per pass, driven by the very
engine the tuning supervisor uses (``trainforge.tuning.plan``).

Printed: for each method, the epochs it consumed and the median (and spread)
of its best validation accuracy against epochs consumed; then how many epochs
hyperband needed to reach random search's final best, as a share of random
search's epoch budget (goal: <= 35%).

    .venv/bin/python bench/tuning_search.py [--seeds 10] [--trials 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from trainforge.examples.digits import write_digits_dataset  # noqa: E402
from trainforge.spec import parse_tuning_job  # noqa: E402
from trainforge.tuning import TrialRecord, TrialState, plan  # noqa: E402

EPOCHS = 9
PARALLEL = 4


class Trainer:
    """One trial's model and optimiser, trained an epoch at a time."""

    def __init__(self, hp: dict[str, str], data: tuple[torch.Tensor, ...]):
        self.X, self.y, self.Xv, self.yv = data
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(64, int(hp["hidden_units"])), nn.ReLU(),
                                   nn.Linear(int(hp["hidden_units"]), 10))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=float(hp["lr"]), momentum=0.9)
        self.batch = int(hp["batch_size"])
        self.epoch = 0

    def step(self) -> float:
        self.epoch += 1
        order = torch.randperm(len(self.X), generator=torch.Generator().manual_seed(self.epoch))
        loss_fn = nn.CrossEntropyLoss()
        for begin in range(0, len(order), self.batch):
            idx = order[begin:begin + self.batch]
            self.opt.zero_grad(set_to_none=True)
            loss_fn(self.model(self.X[idx]), self.y[idx]).backward()
            self.opt.step()
        with torch.no_grad():
            acc = (self.model(self.Xv).argmax(1) == self.yv).float().mean().item()
        return 0.0 if acc != acc else acc


def spec_for(strategy: dict[str, Any], trials: int) -> Any:
    return parse_tuning_job({
        "metadata": {"name": "bench"},
        "spec": {
            "trainingJobTemplate": {"image": "x", "metrics": [{"name": "acc", "regex": "acc=(.*)"}]},
            "objective": {"metric": "acc", "type": "Maximize"},
            "parameters": [
                {"name": "lr", "type": "Continuous", "min": 1e-4, "max": 1.0, "scale": "Log"},
                {"name": "batch_size", "type": "Categorical", "values": ["16", "32", "64", "128", "256"]},
                {"name": "hidden_units", "type": "Integer", "min": 4, "max": 256, "scale": "Log"},
            ],
            "strategy": strategy,
            "limits": {"maxTrials": trials, "maxParallelTrials": PARALLEL},
        },
    }).spec


def run(spec: Any, data: tuple[torch.Tensor, ...]) -> list[tuple[int, float]]:
    """Drive one tuning job to its end; (epochs consumed, best so far) after every pass."""
    trials: list[TrialRecord] = []
    trainers: dict[int, Trainer] = {}
    consumed, best, curve = 0, 0.0, []
    while True:
        step = plan(spec, trials)
        stops = dict(step.stop)
        updated = []
        for t in trials:
            if t.number in stops:
                t = TrialRecord(t.number, t.name, t.hyperparameters, TrialState.EARLY_STOPPED, t.series)
            elif t.state == TrialState.RUNNING:
                acc = trainers[t.number].step()
                consumed += 1
                series = {**t.series, trainers[t.number].epoch: acc}
                done = trainers[t.number].epoch >= EPOCHS
                best = max(best, acc)
                t = TrialRecord(t.number, t.name, t.hyperparameters,
                                TrialState.COMPLETED if done else TrialState.RUNNING, series, acc if done else None)
            updated.append(t)
        trials = updated
        curve.append((consumed, best))
        if step.finished:
            return curve
        for hp in step.new:
            n = len(trials)
            trainers[n] = Trainer(hp, data)
            trials.append(TrialRecord(n, f"t{n}", hp, TrialState.RUNNING))


def best_at(curve: list[tuple[int, float]], epochs: int) -> float:
    return max((b for c, b in curve if c <= epochs), default=0.0)


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((c for c, b in curve if b >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=16, help="trial budget of random search and TPE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        channels = write_digits_dataset(tmp)
        train, val = (np.load(channels[c] / "digits.npz") for c in ("train", "validation"))
        data = tuple(torch.from_numpy(a) for a in (train["X"], train["y"], val["X"], val["y"]))
    hb = {"minResource": 1, "maxResource": EPOCHS, "reductionFactor": 3}
    methods = {
        "random": lambda s: spec_for({"type": "Random", "seed": s}, args.trials),
        "random x2": lambda s: spec_for({"type": "Random", "seed": s}, 2 * args.trials),
        "tpe": lambda s: spec_for({"type": "Bayesian", "seed": s}, args.trials),
        # Successive halving spends fewer epochs per trial: more trials, compared at the same epochs.
        "hyperband+tpe": lambda s: spec_for({"type": "Hyperband", "seed": s, "hyperband": hb}, 3 * args.trials),
    }
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    started = time.monotonic()
    for name, make in methods.items():
        curves[name] = [run(make(seed), data) for seed in range(args.seeds)]
        print(f"{name:>14}: {args.seeds} seeds in {time.monotonic() - started:.0f} s", file=sys.stderr)
    budget = args.trials * EPOCHS
    checkpoints = [budget // 4, budget // 2, budget, 2 * budget]
    print(f"\nbest validation accuracy (median [min..max] over {args.seeds} seeds) by epochs consumed; "
          f"{PARALLEL} trials in parallel, {EPOCHS} epochs per trial, random/tpe budget {budget} epochs")
    print(f"{'method':>14} {'epochs used':>12} " + " ".join(f"{'@' + str(c):>22}" for c in checkpoints))
    for name, runs in curves.items():
        used = statistics.median(r[-1][0] for r in runs)
        cells = []
        for c in checkpoints:
            values = [best_at(r, c) for r in runs]
            cells.append(f"{statistics.median(values):.4f} [{min(values):.3f}..{max(values):.3f}]")
        print(f"{name:>14} {used:>12.0f} " + " ".join(f"{cell:>22}" for cell in cells))
    targets = [r[-1][1] for r in curves["random"]]
    shares = []
    for seed, target in enumerate(targets):
        reached = epochs_to_reach(curves["hyperband+tpe"][seed], target)
        shares.append(reached / budget if reached is not None else float("inf"))
    finite = [s for s in shares if s != float("inf")]
    print(f"\nhyperband+tpe reaches random search's final best (per seed) after a median "
          f"{statistics.median(shares):.0%} of random search's {budget}-epoch budget "
          f"(reached in {len(finite)}/{len(shares)} seeds; goal <= 35%)")
    tpe_vs_random = [best_at(curves["tpe"][s], budget) - best_at(curves["random"][s], budget) for s in range(args.seeds)]
    print(f"tpe minus random at the same budget: median {statistics.median(tpe_vs_random):+.4f}")


if __name__ == "__main__":
    main()
