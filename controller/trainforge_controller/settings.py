"""The controller's settings, from its environment (the Deployment sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ControllerSettings:
    stager_image: str = "trainforge/stager:0.1.0"
    # A Secret in the job's namespace with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    # AWS_ENDPOINT_URL (and AWS_DEFAULT_REGION) for the stager containers.
    object_store_secret: str = "trainforge-object-store"
    default_output: str = "s3://trainforge/jobs/"
    # Per-job storage credentials (credentials.py): "auto" mints short-lived STS
    # credentials scoped to each job's prefixes, with the namespace's Secret as
    # the parent, and falls back to that Secret where the store has no STS; "off"
    # always hands pods the namespace's Secret.
    sts: str = "auto"
    sts_duration_seconds: int = 3600  # refreshed once half has passed, while the job runs
    sts_role_arn: str = "arn:aws:iam::000000000000:role/trainforge-job"  # MinIO ignores it
    # The store's endpoint for tenants' credentials; "" takes the namespace Secret's.
    object_store_endpoint: str = ""
    catalog_configmap: str = "trainforge-instances"
    catalog_namespace: str = "trainforge-system"
    master_port: int = 29500
    # Every container of a job pod runs as this uid/gid (the base images' trainer
    # user): one owner for the shared /opt/ml volume; never 0 (runAsNonRoot).
    job_uid: int = 10001
    # Job pods in the node's network namespace: for clusters whose pod network
    # cannot reach the object store (or has no cluster DNS/kube-proxy, like the
    # test bed's real node). The trainer then declares no container port (one
    # would claim that host port), and resolves Service names with
    # ClusterFirstWithHostNet.
    host_network: bool = False
    # Kueue integration: watch Kueue's Workloads so a queued job's status says
    # why Kueue holds it, and a stopped one leaves its queue (Workload deactivated).
    # Off, a job labelled kueue.x-k8s.io/queue-name is still created suspended.
    kueue: bool = False
    checkpoint_sync_seconds: int = 60
    stage_out_seconds: int = 600  # added to the grace period for the sidecar's upload
    resync_seconds: float = 300.0
    requeue_seconds: float = 15.0  # running jobs only: their billable seconds grow
    catalog_seconds: float = 30.0  # how long a read of the instance catalog is used
    # A TuningJob status write that changes only counts, the best trial and
    # messages waits this long after the previous write (0: never waits).
    tuning_status_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.job_uid < 1:  # the kubelet would refuse every pod, each with its own error
            raise ValueError(f"TRAINFORGE_JOB_UID must be a non-root uid (1 or more), got {self.job_uid}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ControllerSettings":
        env = os.environ if env is None else env
        kwargs: dict[str, object] = {}
        for field, kind in cls.__annotations__.items():
            value = env.get(f"TRAINFORGE_{field.upper()}")
            if value is not None:
                kwargs[field] = {"int": int, "float": float, "bool": _flag}.get(kind, str)(value)
        return cls(**kwargs)  # type: ignore[arg-type]


def _flag(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")
