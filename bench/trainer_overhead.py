"""What the platform costs a training step; prints numbers, asserts nothing.

The digits example's network and step (containers/examples/digits-pytorch:
Linear-ReLU-Linear, 128 hidden units, batches of 32, SGD), in process on the
CPU, timed three ways, interleaved:

1. the bare loop;
2. the same loop calling ``trainforge.runtime.log_metric`` after every step
   (the example logs twice per epoch: this is ~20x more often);
3. the bare loop while another process syncs the checkpoint folder (the
   example's checkpoint, written with torch.save) to the embedded store with
   ``staging.sync_checkpoints``, as the supervisor does, every
   ``--sync-every`` seconds (the supervisor: every 30 s; default here 1 s).

    .venv/bin/python bench/trainer_overhead.py [--epochs 6] [--rounds 5] [--sync-every 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SYNCER = textwrap.dedent("""
    import sys, time
    from trainforge.contract import Layout
    from trainforge.spec import parse_job
    from trainforge.staging import sync_checkpoints
    root, uri, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
    job = parse_job({"metadata": {"name": "bench-sync"}, "spec": {"image": "bench", "checkpoints": {"uri": uri}}})
    syncs, busy = 0, 0.0
    print("ready", flush=True)
    while sys.stdin.readline().strip() != "stop":
        started = time.perf_counter()
        sync_checkpoints(job, Layout(root))
        busy += time.perf_counter() - started
        syncs += 1
    print(f"{syncs} {busy}", flush=True)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sync-every", type=float, default=1.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tf-overhead-"))
    os.environ["TRAINFORGE_HOME"] = str(tmp / "home")
    os.environ["TRAINFORGE_ROOT"] = str(tmp / "ml")  # the contract tree log_metric writes into
    import threading

    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from trainforge import runtime

    torch.set_num_threads(1)
    torch.manual_seed(0)
    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    checkpoints = tmp / "ml" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoints / "epoch-0001.pt")

    def epochs(log: bool) -> float:
        """Seconds per step over args.epochs epochs."""
        steps = 0
        started = time.perf_counter()
        for _ in range(args.epochs):
            order = torch.randperm(len(X))
            for begin in range(0, len(order), 32):
                batch = order[begin:begin + 32]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[batch]), y[batch])
                loss.backward()
                optimizer.step()
                value = loss.item()
                if log:
                    runtime.log_metric("train:loss", value, step=steps)
                steps += 1
        return (time.perf_counter() - started) / steps

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    syncer = subprocess.Popen([sys.executable, "-c", SYNCER, str(tmp / "ml"), "local://bench-checkpoints/",
                               str(args.sync_every)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env)
    assert syncer.stdin is not None and syncer.stdout is not None
    syncer.stdout.readline()
    syncing = threading.Event()

    def tick() -> None:  # asks the syncer for one sync per period while syncing is set
        while True:
            time.sleep(args.sync_every)
            if syncing.is_set():
                syncer.stdin.write("sync\n")  # type: ignore[union-attr]
                syncer.stdin.flush()  # type: ignore[union-attr]

    threading.Thread(target=tick, daemon=True).start()
    epochs(False)  # warm-up
    bare, logged, synced = [], [], []
    calls = []
    for _ in range(args.rounds):
        bare.append(epochs(False))
        logged.append(epochs(True))
        syncing.set()
        synced.append(epochs(False))
        syncing.clear()
        started = time.perf_counter()
        for i in range(1000):
            runtime.log_metric("probe", 0.5, step=i)
        calls.append((time.perf_counter() - started) / 1000)
    syncer.stdin.write("stop\n")
    syncer.stdin.flush()
    syncs, busy = syncer.stdout.readline().split()
    syncer.wait()

    step, call = statistics.median(bare), statistics.median(calls)
    print(f"digits training step (CPU, 1 thread, batch 32): {step * 1e6:.0f} us bare, median of {args.rounds} rounds")
    print(f"  log_metric per call: {call * 1e6:.1f} us = {100 * call / step:.2f}% of a step")
    print(f"  loop with log_metric every step: {statistics.median(logged) * 1e6:.0f} us/step "
          f"({100 * (statistics.median(logged) / step - 1):+.2f}%)")
    print(f"  loop while the checkpoint folder is synced every {args.sync_every:g} s: "
          f"{statistics.median(synced) * 1e6:.0f} us/step ({100 * (statistics.median(synced) / step - 1):+.2f}%); "
          f"{syncs} syncs, {1000 * float(busy) / max(1, int(syncs)):.1f} ms each; at the supervisor's 30 s "
          f"that is {100 * float(busy) / max(1, int(syncs)) / 30:.3f}% of one core")


if __name__ == "__main__":
    main()
