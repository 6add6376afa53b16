"""The container contract, as data: the /opt/ml layout, the files written into
it and the environment a trainer sees. SageMaker-compatible, so an existing
bring-your-own-container image runs unchanged.

Everything here is pure: functions take a root directory and the job and return
paths, dicts and env mappings; writing them is the backends' business. Nothing
happens at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime imports this module inside images: stdlib only at run time
    from .instances import InstanceType

CONTAINER_ROOT = "/opt/ml"
FAILURE_REASON_LIMIT = 1024  # characters of /opt/ml/output/failure kept as the failure reason
METRICS_FILE_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class Layout:
    """The /opt/ml tree under ``root`` (``/opt/ml`` in a container, a run
    directory for the process backend)."""

    root: str = CONTAINER_ROOT

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def input_dir(self) -> str: return self._p("input")
    @property
    def config_dir(self) -> str: return self._p("input", "config")
    @property
    def hyperparameters_file(self) -> str: return self._p("input", "config", "hyperparameters.json")
    @property
    def resource_config_file(self) -> str: return self._p("input", "config", "resourceconfig.json")
    @property
    def input_data_config_file(self) -> str: return self._p("input", "config", "inputdataconfig.json")
    @property
    def data_dir(self) -> str: return self._p("input", "data")
    def channel_dir(self, channel: str) -> str: return self._p("input", "data", channel)
    @property
    def model_dir(self) -> str: return self._p("model")
    @property
    def output_dir(self) -> str: return self._p("output")
    @property
    def output_data_dir(self) -> str: return self._p("output", "data")
    @property
    def failure_file(self) -> str: return self._p("output", "failure")
    @property
    def checkpoint_dir(self) -> str: return self._p("checkpoints")
    @property
    def metrics_file(self) -> str: return self._p("output", METRICS_FILE_NAME)
    @property
    def tensorboard_dir(self) -> str: return self._p("output", "tensorboard")  # synced to <artifacts>/tensorboard/

    def directories(self) -> list[str]:
        return [self.config_dir, self.data_dir, self.model_dir, self.output_data_dir, self.checkpoint_dir]


@dataclass(frozen=True)
class HostInfo:
    current_host: str
    hosts: tuple[str, ...]
    network_interface: str = "eth0"

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)


def host_names(job_name: str, count: int) -> tuple[str, ...]:
    """Stable host names: algo-1..algo-N as in SageMaker."""
    return tuple(f"algo-{i + 1}" for i in range(count))


def resource_config(host: HostInfo) -> dict[str, Any]:
    return {
        "current_host": host.current_host,
        "hosts": list(host.hosts),
        "network_interface_name": host.network_interface,
        "current_group_name": "homogeneousCluster",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "hosts": list(host.hosts)}],
    }


def input_data_config(inputs: list[Any]) -> dict[str, Any]:
    """inputdataconfig.json: channel -> its settings (SageMaker's key names)."""
    config: dict[str, Any] = {}
    for item in inputs:
        entry = {
            "TrainingInputMode": item.mode.value,
            "S3DistributionType": item.distribution.value,
            "RecordWrapperType": "None",
        }
        if item.content_type:
            entry["ContentType"] = item.content_type
        config[item.channel] = entry
    return config


def env_name(name: str) -> str:
    """SageMaker's rule for SM_HP_<NAME> / SM_CHANNEL_<NAME>: upper case, '-' and '.' to '_'."""
    return name.upper().replace("-", "_").replace(".", "_")


# What ``spec.env`` may not set (checked at validation, spec/models.py), by family:
# - SM_* and TRAINFORGE_*: the contract itself (paths, hosts, hyperparameters, the
#   metrics file); a job that moved SM_MODEL_DIR would ship an empty model.
# - TRAINING_JOB_NAME, PYTHONUNBUFFERED: also set by contract_env; unbuffered output is
#   what lets metric regexes and logs see lines as they happen.
# - MASTER_ADDR/MASTER_PORT/WORLD_SIZE/NNODES/NODE_RANK: the rendezvous of a multi-host
#   job; a wrong value hangs every host (reserved even for one host, so a spec does
#   not change meaning when its count grows).
# - PYTHONPATH/PYTHONHOME/PYTHONSTARTUP/PYTHONUSERBASE/PYTHONSAFEPATH and the dynamic
#   loader's LD_PRELOAD/LD_LIBRARY_PATH/LD_AUDIT: they decide which code runs before the
#   trainer's own (the process backend puts trainforge.runtime on PYTHONPATH); the image
#   is the place to set them, where they are reviewed with the code.
RESERVED_ENV_PREFIXES = ("SM_", "TRAINFORGE_")
RESERVED_ENV_NAMES = frozenset({
    "TRAINING_JOB_NAME", "PYTHONUNBUFFERED",
    "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NNODES", "NODE_RANK",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
})


def reserved_env(name: str) -> bool:
    """Is ``name`` the contract's to set (see RESERVED_ENV_NAMES)?"""
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)


def colliding_names(names: Any, prefix: str) -> list[tuple[str, list[str]]]:
    """Names that env_name maps onto the same ``<prefix><NAME>`` variable:
    [(variable, [name, name, ...]), ...], sorted; empty when there are none."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(f"{prefix}{env_name(name)}", []).append(name)
    return sorted((var, sorted(group)) for var, group in groups.items() if len(group) > 1)


def contract_env(
    *,
    job_name: str,
    layout: Layout,
    hyperparameters: dict[str, str],
    inputs: list[Any],
    host: HostInfo,
    instance: InstanceType,
    num_cpus: int | None = None,
    master_port: int = 29500,
    attempt: int = 1,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment variables of the contract, in one mapping."""
    channels = [item.channel for item in inputs]
    env: dict[str, str] = {
        "SM_MODEL_DIR": layout.model_dir,
        "SM_INPUT_DIR": layout.input_dir,
        "SM_INPUT_CONFIG_DIR": layout.config_dir,
        "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(inputs)),
        "SM_OUTPUT_DIR": layout.output_dir,
        "SM_OUTPUT_DATA_DIR": layout.output_data_dir,
        "SM_CHECKPOINT_DIR": layout.checkpoint_dir,
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hyperparameters, sort_keys=True),
        "SM_CURRENT_HOST": host.current_host,
        "SM_HOSTS": json.dumps(list(host.hosts)),
        "SM_NUM_GPUS": str(instance.gpus),
        "SM_NUM_CPUS": str(num_cpus if num_cpus is not None else int(instance.cpus)),
        "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "current_host": host.current_host,
                                       "hosts": list(host.hosts), "hyperparameters": hyperparameters}),
        "TRAINING_JOB_NAME": job_name,
        "TRAINFORGE_JOB_NAME": job_name,
        "TRAINFORGE_ROOT": layout.root,
        "TRAINFORGE_METRICS_FILE": layout.metrics_file,
        "TRAINFORGE_TENSORBOARD_DIR": layout.tensorboard_dir,
        "TRAINFORGE_ATTEMPT": str(attempt),
        "TRAINFORGE_INSTANCE_TYPE": instance.name,
        # Unbuffered so log lines (and metric regexes) are seen as they happen.
        "PYTHONUNBUFFERED": "1",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{env_name(channel)}"] = layout.channel_dir(channel)
    for name, value in hyperparameters.items():
        env[f"SM_HP_{env_name(name)}"] = value
    if len(host.hosts) > 1:
        env.update(torchrun_env(host, master_port))
    # The spec's own env first, so the contract wins even for a spec that skipped validation.
    return {**(extra or {}), **env}


def torchrun_env(host: HostInfo, master_port: int = 29500, master_addr: str | None = None) -> dict[str, str]:
    """The rendezvous variables torchrun and torch.distributed read."""
    return {
        "MASTER_ADDR": master_addr or host.hosts[0],
        "MASTER_PORT": str(master_port),
        "WORLD_SIZE": str(len(host.hosts)),
        "NNODES": str(len(host.hosts)),
        "NODE_RANK": str(host.rank),
    }


def read_failure_reason(text: str) -> str | None:
    """The failure reason from the failure file's contents (first 1024 chars)."""
    text = text.strip()
    return text[:FAILURE_REASON_LIMIT] if text else None
