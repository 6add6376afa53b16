"""Helpers training code imports inside the container.

    from trainforge import runtime

    env = runtime.current()                 # frozen snapshot of the contract
    hp = runtime.hyperparameters()
    lr = hp.float("lr", 0.01)
    train = runtime.channel_path("train")
    runtime.log_metric("validation:accuracy", 0.97, step=epoch)
    if runtime.stop_requested(): ...        # SIGTERM: checkpoint and exit

Stdlib only (plus ``trainforge.contract``), so any image with Python can carry it;
nothing happens at import: the environment is read on first use.
"""

from __future__ import annotations

from .checkpoints import atomic_write, latest_checkpoint, list_checkpoints, prune_checkpoints
from .entrypoint import Stopped, run_trainer
from .environment import (
    TrainingEnvironment, channel_path, checkpoint_dir, current, hyperparameters, model_dir,
    output_data_dir,
)
from .errors import ChannelNotFoundError, HyperparameterError, RuntimeContractError
from .failure import describe_exception, write_failure
from .hparams import Hyperparameters
from .metrics import log_metric
from .signals import (
    STOPPED_EXIT_CODE, handle_stop_signals, on_stop, stop_requested, stop_signal, wait_for_stop,
)

__all__ = [
    "STOPPED_EXIT_CODE",
    "ChannelNotFoundError",
    "HyperparameterError",
    "Hyperparameters",
    "RuntimeContractError",
    "Stopped",
    "TrainingEnvironment",
    "atomic_write",
    "channel_path",
    "checkpoint_dir",
    "current",
    "describe_exception",
    "handle_stop_signals",
    "hyperparameters",
    "latest_checkpoint",
    "list_checkpoints",
    "log_metric",
    "model_dir",
    "on_stop",
    "output_data_dir",
    "prune_checkpoints",
    "run_trainer",
    "stop_requested",
    "stop_signal",
    "wait_for_stop",
    "write_failure",
]
