"""Digits classifier: a small PyTorch MLP on scikit-learn's 8x8 handwritten digits.

Channels ``train`` and ``validation`` hold .npz files with arrays X (float32,
n x 64) and y (int64). Hyperparameters (all optional):

    lr=0.05 momentum=0.9 epochs=15 batch_size=32 hidden_units=128 seed=0
    sleep_per_epoch=0     seconds to idle after each epoch (test aid: slow runs)
    fail_at_epoch=-1      raise at the start of that epoch (test aid: crashes)
    fail_attempts=1       ... only on attempts 1..N, so a retry resumes and succeeds

Each epoch prints one line, e.g. ``epoch=3 train_loss=0.1234 val_acc=0.9611``,
logs train:loss and validation:accuracy, and saves a checkpoint; a restart
resumes from the newest one made with the same settings. SIGTERM ends the
current epoch, checkpoints and exits 143 with a failure reason.

A checkpoint records what shaped it (the hyperparameters below and the data's
shape). One made differently, e.g. found in a checkpoint location shared with
an earlier job that used another learning rate, is not resumed: it is set
aside with a printed note and training starts from epoch 1. ``epochs`` may
differ (resuming with more epochs trains on), and so may the test aids.

Several hosts (WORLD_SIZE > 1, as trainforge sets for instance count > 1):
PyTorch DDP over gloo with the torchrun variables (MASTER_ADDR, MASTER_PORT,
WORLD_SIZE, NODE_RANK). Each rank trains on its own equal share of every
epoch's shuffled order, DDP all-reduces the gradients, and after each epoch
every rank prints ``ddp rank=R world=W epoch=E param_checksum=...`` (equal on
all ranks when the gradients were all-reduced). Only rank 0 logs metrics and
writes the model; every rank checkpoints (the same weights), so any host
can resume.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from trainforge import runtime

CHECKPOINT_PATTERN = "epoch-*.pt"


def load_channel(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    folder = runtime.channel_path(name)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"channel {name!r} ({folder}) holds no .npz file")
    parts = [np.load(path) for path in files]
    X = np.concatenate([p["X"] for p in parts]).astype(np.float32)
    y = np.concatenate([p["y"] for p in parts]).astype(np.int64)
    return torch.from_numpy(X), torch.from_numpy(y)


def build_model(inputs: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        predicted = model(X).argmax(dim=1)
    model.train()
    return (predicted == y).float().mean().item(), predicted


def confusion_matrix(y: torch.Tensor, predicted: torch.Tensor, classes: int) -> list[list[int]]:
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((y.cpu(), predicted.cpu()), torch.ones_like(y.cpu()), accumulate=True)
    return matrix.tolist()


def save_checkpoint(epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, metrics: dict[str, float],
                    settings: dict[str, str]) -> Path:
    path = runtime.checkpoint_dir() / f"epoch-{epoch:04d}.pt"
    with runtime.atomic_write(path) as f:
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "metrics": metrics, "settings": settings}, f)
    runtime.prune_checkpoints(keep=2, pattern=CHECKPOINT_PATTERN)
    return path


def compatible_checkpoint(settings: dict[str, str], device: torch.device) -> dict | None:
    """The newest checkpoint made with ``settings``; others are set aside (removed
    from this job's checkpoint folder) with a note, so they neither resume nor
    mix with the checkpoints this run writes."""
    for path in reversed(runtime.list_checkpoints(CHECKPOINT_PATTERN)):
        state = torch.load(path, map_location=device, weights_only=True)
        theirs = state.get("settings")
        if theirs == settings:
            return state
        changed = sorted(k for k in settings if theirs is None or theirs.get(k) != settings[k])
        what = ", ".join(f"{k} {(theirs or {}).get(k, '?')} -> {settings[k]}" for k in changed)
        print(f"not resuming from {path.name}: it was made with other settings ({what}); "
              "starting from epoch 1", flush=True)
        path.unlink()
    return None


def join_ranks() -> tuple[int, int]:
    """(rank, world size); joins the process group when there are several hosts."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    rank = int(os.environ.get("NODE_RANK", os.environ.get("RANK", "0")))
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    print(f"ddp: rank {rank} of {world} joined (master {os.environ.get('MASTER_ADDR')}:"
          f"{os.environ.get('MASTER_PORT')})", flush=True)
    return rank, world


def param_checksum(model: nn.Module) -> str:
    return f"{sum(float(p.detach().double().sum()) for p in model.parameters()):.10f}"


def train() -> None:
    env = runtime.current()
    hp = runtime.hyperparameters()
    lr = hp.float("lr", 0.05)
    momentum = hp.float("momentum", 0.9)
    epochs = hp.int("epochs", 15)
    batch_size = hp.int("batch_size", 32)
    hidden = hp.int("hidden_units", 128)
    seed = hp.int("seed", 0)
    sleep_per_epoch = hp.float("sleep_per_epoch", 0.0)
    fail_at_epoch = hp.int("fail_at_epoch", -1)
    fail_attempts = hp.int("fail_attempts", 1)
    if epochs < 1 or batch_size < 1 or hidden < 1:
        raise ValueError(f"epochs, batch_size and hidden_units must be positive (got {epochs}, {batch_size}, {hidden})")

    runtime.handle_stop_signals()
    torch.set_num_threads(max(1, min(4, env.num_cpus)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)

    rank, world = join_ranks()
    X_train, y_train = load_channel("train")
    X_val, y_val = load_channel("validation")
    X_train, y_train, X_val, y_val = (t.to(device) for t in (X_train, y_train, X_val, y_val))
    classes = int(max(y_train.max().item(), y_val.max().item())) + 1
    net = build_model(X_train.shape[1], hidden, classes).to(device)
    # DDP broadcasts rank 0's weights at construction and all-reduces (averages) gradients in backward().
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    print(f"training on {device}: {len(X_train)} train / {len(X_val)} validation samples, "
          f"{classes} classes, host {env.current_host}, attempt {env.attempt}", flush=True)

    # What a checkpoint must share with this run to be resumed.
    settings = {name: str(value) for name, value in (
        ("lr", lr), ("momentum", momentum), ("batch_size", batch_size), ("hidden_units", hidden), ("seed", seed),
        ("inputs", X_train.shape[1]), ("classes", classes))}
    start_epoch, metrics = 1, {}
    state = compatible_checkpoint(settings, device)
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, metrics = int(state["epoch"]) + 1, dict(state.get("metrics", {}))
        print(f"resumed from checkpoint epoch={state['epoch']}", flush=True)

    if start_epoch > epochs:
        print(f"the checkpoint is at epoch {start_epoch - 1} of {epochs}: nothing left to train", flush=True)
    for epoch in range(start_epoch, epochs + 1):
        if epoch == fail_at_epoch and env.attempt <= fail_attempts:
            raise RuntimeError(f"simulated failure at epoch {epoch} (fail_at_epoch={fail_at_epoch}, "
                               f"attempt {env.attempt})")
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)  # same order on a resumed run
        order = torch.randperm(len(X_train), generator=generator).to(device)
        if world > 1:  # equal shares, or a rank would wait in an all-reduce the others never join
            share = len(order) // world
            order = order[rank * share:(rank + 1) * share]
        total, seen = 0.0, 0
        for begin in range(0, len(order), batch_size):
            batch = order[begin:begin + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            seen += len(batch)
        train_loss = total / seen
        val_acc, _ = evaluate(net, X_val, y_val)
        metrics = {"train:loss": train_loss, "validation:accuracy": val_acc}
        print(f"epoch={epoch} train_loss={train_loss:.4f} val_acc={val_acc:.4f}", flush=True)
        if world > 1:
            print(f"ddp rank={rank} world={world} epoch={epoch} param_checksum={param_checksum(net)}", flush=True)
        if rank == 0:
            runtime.log_metric("train:loss", train_loss, step=epoch)
            runtime.log_metric("validation:accuracy", val_acc, step=epoch)
        save_checkpoint(epoch, net, optimizer, metrics, settings)
        if sleep_per_epoch > 0:
            runtime.wait_for_stop(sleep_per_epoch)
        stop = runtime.stop_signal()
        if stop is not None and epoch < epochs:
            raise runtime.Stopped(f"stopped by {stop.name} after epoch {epoch} of {epochs}; "
                          f"checkpoint saved, a restart resumes at epoch {epoch + 1}")

    val_acc, predicted = evaluate(net, X_val, y_val)
    if world > 1:
        dist.destroy_process_group()
    if env.is_master and rank == 0:
        model_dir = runtime.model_dir()
        with runtime.atomic_write(model_dir / "model.pt") as f:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, f)
        description = {
            "framework": f"pytorch {torch.__version__}",
            "architecture": {"type": "mlp", "inputs": int(X_train.shape[1]), "hidden_units": hidden,
                             "classes": classes, "activation": "relu"},
            "input": {"shape": [int(X_train.shape[1])], "dtype": "float32", "range": [0.0, 1.0]},
            "epochs": epochs,
            "hyperparameters": hp.as_dict(),
            "metrics": {**metrics, "validation:accuracy": val_acc},
        }
        (model_dir / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        matrix = confusion_matrix(y_val, predicted, classes)
        rows = ["actual\\predicted," + ",".join(str(c) for c in range(classes))]
        rows += [f"{label}," + ",".join(str(n) for n in counts) for label, counts in enumerate(matrix)]
        (runtime.output_data_dir() / "confusion_matrix.csv").write_text("\n".join(rows) + "\n")
    # not "val_acc=": the job's regex would count this line as one more epoch
    print(f"done: final validation accuracy {val_acc:.4f}", flush=True)


def main() -> int:
    return runtime.run_trainer(train)


if __name__ == "__main__":
    sys.exit(main())
