"""The training environment, read once from the container contract.

``current()`` builds a frozen snapshot on first use (never at import) from the
/opt/ml tree and the SM_* / TRAINFORGE_* variables. The root is TRAINFORGE_ROOT
when set (the process backend relocates the tree into a run directory), else
/opt/ml. Where a SageMaker variable names a directory (SM_MODEL_DIR,
SM_CHANNEL_<NAME>, SM_OUTPUT_DIR, ...), it wins over the layout, so images that
rely on either keep working.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..contract import CONTAINER_ROOT, METRICS_FILE_NAME, Layout, env_name
from .errors import ChannelNotFoundError, RuntimeContractError
from .hparams import Hyperparameters


@dataclass(frozen=True)
class TrainingEnvironment:
    """A read-only snapshot of what the platform handed this trainer."""

    root: Path
    layout: Layout
    job_name: str
    current_host: str
    hosts: tuple[str, ...]
    num_gpus: int
    num_cpus: int
    attempt: int
    channels: Mapping[str, Path]
    hyperparameters: Hyperparameters = field(repr=False)
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    metrics_file: Path

    @property
    def rank(self) -> int:
        """This host's index among the job's hosts (0 on a single host)."""
        return self.hosts.index(self.current_host) if self.current_host in self.hosts else 0

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def channel_path(self, channel: str) -> Path:
        """The directory holding channel ``channel``'s staged data."""
        path = self.channels.get(channel)
        if path is None:
            raise ChannelNotFoundError(channel, tuple(sorted(self.channels)))
        if not path.is_dir():
            raise ChannelNotFoundError(channel, tuple(sorted(self.channels)), missing_dir=path)
        return path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingEnvironment:
        """Read the contract from ``environ`` (default ``os.environ``) and the files under the root."""
        env = os.environ if environ is None else environ
        root = Path(env.get("TRAINFORGE_ROOT") or CONTAINER_ROOT)
        layout = Layout(str(root))
        config_dir = Path(env.get("SM_INPUT_CONFIG_DIR") or layout.config_dir)
        input_dir = Path(env.get("SM_INPUT_DIR") or layout.input_dir)
        output_dir = Path(env.get("SM_OUTPUT_DIR") or layout.output_dir)

        current_host, hosts = _hosts(config_dir / "resourceconfig.json", env)
        return cls(
            root=root,
            layout=layout,
            job_name=env.get("TRAINFORGE_JOB_NAME") or env.get("TRAINING_JOB_NAME") or "",
            current_host=current_host,
            hosts=hosts,
            num_gpus=_int_var(env, "SM_NUM_GPUS", lambda: _visible_gpus(env)),
            num_cpus=_int_var(env, "SM_NUM_CPUS", _usable_cpus),
            attempt=_int_var(env, "TRAINFORGE_ATTEMPT", lambda: 1),
            channels=MappingProxyType(_channels(config_dir / "inputdataconfig.json", input_dir / "data", env)),
            hyperparameters=_hyperparameters(config_dir / "hyperparameters.json", env),
            model_dir=Path(env.get("SM_MODEL_DIR") or layout.model_dir),
            output_dir=output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR") or output_dir / "data"),
            checkpoint_dir=Path(env.get("SM_CHECKPOINT_DIR") or layout.checkpoint_dir),
            metrics_file=Path(env.get("TRAINFORGE_METRICS_FILE") or output_dir / METRICS_FILE_NAME),
        )


# The lazily built snapshot ----------------------------------------------------

_lock = threading.Lock()
_current: TrainingEnvironment | None = None


def current(*, refresh: bool = False) -> TrainingEnvironment:
    """The environment of this run, read on first call and then kept.

    ``refresh=True`` reads it again (after a test or a launcher changed the
    environment)."""
    global _current
    with _lock:
        if _current is None or refresh:
            _current = TrainingEnvironment.from_env()
        return _current


def channel_path(channel: str) -> Path:
    """The directory of input channel ``channel`` (e.g. ``"train"``)."""
    return current().channel_path(channel)


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_dir() -> Path:
    """Where the model goes; packed as model.tar.gz and uploaded. Created if missing."""
    return _made(current().model_dir)


def output_data_dir() -> Path:
    """Where other outputs go (plots, predictions); uploaded. Created if missing."""
    return _made(current().output_data_dir)


def checkpoint_dir() -> Path:
    """Synced to the checkpoint URI while running, restored before a retry. Created if missing."""
    return _made(current().checkpoint_dir)


# Readers, each naming the file or variable it could not use -----------------------

def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RuntimeContractError(f"cannot read {path}: {exc}") from exc


def _json_var(env: Mapping[str, str], name: str) -> Any:
    text = env.get(name)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RuntimeContractError(f"environment variable {name} is not valid JSON: {exc}") from exc


def _int_var(env: Mapping[str, str], name: str, fallback: Any) -> int:
    text = env.get(name)
    if not text:
        return int(fallback())
    try:
        return int(text)
    except ValueError:
        raise RuntimeContractError(f"environment variable {name}={text!r} is not an integer") from None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _visible_gpus(env: Mapping[str, str]) -> int:
    # Only a hint when SM_NUM_GPUS is absent (e.g. a bare `docker run --gpus`).
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def _hosts(resource_config: Path, env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    config = _read_json(resource_config)
    if config is not None:
        if not isinstance(config, dict) or "current_host" not in config or "hosts" not in config:
            raise RuntimeContractError(f"{resource_config}: expected an object with current_host and hosts")
        return str(config["current_host"]), tuple(str(h) for h in config["hosts"])
    hosts = _json_var(env, "SM_HOSTS")
    current_host = env.get("SM_CURRENT_HOST")
    if hosts is None:
        hosts = [current_host or "algo-1"]
    if not isinstance(hosts, list):
        raise RuntimeContractError("environment variable SM_HOSTS: expected a JSON list of host names")
    return current_host or str(hosts[0]), tuple(str(h) for h in hosts)


def _channels(input_data_config: Path, data_dir: Path, env: Mapping[str, str]) -> dict[str, Path]:
    """Channel name -> directory, from every place the contract names channels."""
    names: list[str] = []
    config = _read_json(input_data_config)
    if isinstance(config, dict):
        names.extend(str(k) for k in config)
    listed = _json_var(env, "SM_CHANNELS")
    if isinstance(listed, list):
        names.extend(str(c) for c in listed)
    if data_dir.is_dir():
        names.extend(sorted(p.name for p in data_dir.iterdir() if p.is_dir()))
    channels: dict[str, Path] = {}
    for name in names:
        if name not in channels:
            channels[name] = Path(env.get(f"SM_CHANNEL_{env_name(name)}") or data_dir / name)
    # SM_CHANNEL_<NAME> alone (no config, no directory) still names a channel.
    known = {f"SM_CHANNEL_{env_name(name)}" for name in channels}
    for var, value in env.items():
        if var.startswith("SM_CHANNEL_") and var not in known and value:
            channels.setdefault(var[len("SM_CHANNEL_"):].lower(), Path(value))
    return channels


def _hyperparameters(path: Path, env: Mapping[str, str]) -> Hyperparameters:
    values = _read_json(path)
    source = str(path)
    if values is None:
        values, source = _json_var(env, "SM_HPS"), "SM_HPS"
    if values is None:
        return Hyperparameters({}, source=f"{path} (absent)")
    if not isinstance(values, dict):
        raise RuntimeContractError(f"{source}: expected a JSON object of name -> value")
    return Hyperparameters(values, source=source)


def hyperparameters() -> Hyperparameters:
    """The job's hyperparameters, from hyperparameters.json (or SM_HPS when the file is absent)."""
    return current().hyperparameters
