"""The trainer: ``python -m trainer.start`` is the image's entrypoint.

A complete, small example to replace with your model: linear regression
(y = w*x + b) by stochastic gradient descent, in plain Python so it runs on
any base image. It shows every part of the trainforge container contract:

- hyperparameters, typed: ``runtime.hyperparameters().float("lr", 0.05)``
- input channels: every CSV file in the ``train`` channel (x in the first
  column, y in the last); without a ``train`` channel it makes synthetic data
- metrics: one ``epoch=N loss=X`` line per epoch (the job's regex reads it)
  and ``runtime.log_metric`` (structured records)
- checkpoints in the checkpoint folder each epoch; a restart resumes from the
  newest one made with the same lr and seed (job.json gives each job its own
  checkpoint location with {job}; one shared on purpose may hold another
  run's, which is set aside with a note)
- SIGTERM (stop, time limit): finish the epoch, checkpoint, exit 143
- the model in the model folder; failures in the failure file, exit code 1

For PyTorch, see containers/examples/digits-pytorch in the trainforge
repository: the same structure with ``torch.save`` checkpoints.
"""

from __future__ import annotations

import json
import random
import sys

from trainforge import runtime

CHECKPOINTS = "epoch-*.json"


def load_rows() -> list[tuple[float, float]]:
    env = runtime.current()
    if "train" not in env.channels:
        rng = random.Random(0)
        print("no 'train' channel: using 256 synthetic points of y = 3x + 2 + noise", flush=True)
        xs = [rng.uniform(-1.0, 1.0) for _ in range(256)]
        return [(x, 3.0 * x + 2.0 + rng.gauss(0.0, 0.1)) for x in xs]
    rows: list[tuple[float, float]] = []
    folder = runtime.channel_path("train")
    for path in sorted(folder.rglob("*.csv")):
        for line in path.read_text().splitlines():
            fields = line.split(",")
            try:
                rows.append((float(fields[0]), float(fields[-1])))
            except ValueError:
                continue  # a header or a malformed line
    if not rows:
        raise ValueError(f"the train channel ({folder}) holds no CSV rows of numbers")
    return rows


def train() -> None:
    hp = runtime.hyperparameters()
    epochs = hp.int("epochs", 20)
    lr = hp.float("lr", 0.05)
    seed = hp.int("seed", 0)
    runtime.handle_stop_signals()
    rows = load_rows()
    print(f"training on {len(rows)} rows for {epochs} epochs (attempt {runtime.current().attempt})", flush=True)

    settings = {"lr": lr, "seed": seed}  # what a checkpoint must share with this run to be resumed
    w, b, start = 0.0, 0.0, 1
    for path in reversed(runtime.list_checkpoints(CHECKPOINTS)):
        state = json.loads(path.read_text())
        if state.get("settings") == settings:
            w, b, start = state["w"], state["b"], state["epoch"] + 1
            print(f"resumed from checkpoint epoch={state['epoch']}", flush=True)
            break
        print(f"not resuming from {path.name}: made with {state.get('settings')}, this run is {settings}",
              flush=True)
        path.unlink()  # so it neither resumes later nor mixes with this run's

    loss = float("nan")
    for epoch in range(start, epochs + 1):
        order = list(rows)
        random.Random(seed * 100_003 + epoch).shuffle(order)  # a resumed run shuffles alike
        for x, y in order:
            error = (w * x + b) - y
            w -= lr * error * x
            b -= lr * error
        loss = sum(((w * x + b) - y) ** 2 for x, y in rows) / len(rows)
        print(f"epoch={epoch} loss={loss:.6f}", flush=True)
        runtime.log_metric("train:loss", loss, step=epoch)
        with runtime.atomic_write(runtime.checkpoint_dir() / f"epoch-{epoch:04d}.json", "w") as f:
            json.dump({"epoch": epoch, "w": w, "b": b, "settings": settings}, f)
        runtime.prune_checkpoints(keep=2, pattern=CHECKPOINTS)
        stop = runtime.stop_signal()
        if stop is not None and epoch < epochs:
            raise runtime.Stopped(f"stopped by {stop.name} after epoch {epoch} of {epochs}; "
                          f"a restart resumes at epoch {epoch + 1}")

    model = {"type": "linear", "w": w, "b": b, "loss": loss, "hyperparameters": hp.as_dict()}
    with runtime.atomic_write(runtime.model_dir() / "model.json", "w") as f:
        json.dump(model, f, indent=2)
    print(f"model: y = {w:.4f} * x + {b:.4f}", flush=True)


def main() -> int:
    # Platforms run the image as `<entrypoint> train`; the argument is accepted and ignored.
    return runtime.run_trainer(train)


if __name__ == "__main__":
    sys.exit(main())
