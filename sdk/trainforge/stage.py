"""The stager: what the cluster's stager containers run around a trainer.

    python -m trainforge.stage in     # init container: config files, channels, checkpoints
    python -m trainforge.stage sync   # native sidecar: sync checkpoints, metrics, TensorBoard logs; on SIGTERM stage out
    python -m trainforge.stage out    # stage out once (model, output data, metrics)

The job comes from ``TRAINFORGE_JOB`` (the TrainingJob as JSON), this host's
index from ``JOB_COMPLETION_INDEX`` (set by an Indexed Job) and the artifact
root from ``TRAINFORGE_OUTPUT_URI``. Object-store credentials are the usual
``AWS_*`` variables; on the cluster, the job's own short-lived credentials in the
file ``AWS_SHARED_CREDENTIALS_FILE``, which the kubelet replaces when the
controller refreshes them (each store opened afterwards reads the new file).
Built only on ``trainforge.staging``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import untrusted
from .contract import HostInfo, Layout, host_names
from .errors import TrainforgeError

if TYPE_CHECKING:
    from .spec import TrainingJob

# The spec, staging and storage modules (pydantic, boto3: a second or more of
# imports on a busy node) are imported inside the functions, after the sidecar's
# SIGTERM handler is in place: see ``main``.

METRICS_LIMIT = 64 << 20  # bytes of the trainer's metrics file uploaded


def _job(env: Mapping[str, str]) -> TrainingJob:
    from .spec import TrainingJob

    return TrainingJob.model_validate(json.loads(env["TRAINFORGE_JOB"]))


def _host(job: TrainingJob, env: Mapping[str, str]) -> HostInfo:
    """This host: the Indexed Job's completion index (JOB_COMPLETION_INDEX, or the
    TRAINFORGE_HOST_INDEX the builder takes from the pod's label), 0 when unset."""
    hosts = host_names(job.name, job.spec.instance.count)
    index = int(env.get("JOB_COMPLETION_INDEX") or env.get("TRAINFORGE_HOST_INDEX") or "0")
    if not 0 <= index < len(hosts):
        raise ValueError(f"host index {index} is outside the job's {len(hosts)} host(s)")
    return HostInfo(current_host=hosts[index], hosts=hosts)


class _Tally:
    """Counts the bytes of the transfers it watches (a TransferProgress)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def start(self, total_files: int, total_bytes: int, description: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes

    def file_done(self) -> None:
        pass

    def finish(self) -> None:
        pass


def stage_in_command(job: TrainingJob, layout: Layout, host: HostInfo, started: float | None = None) -> None:
    """Config files, channels, checkpoints; one line with where the time went
    (the process's own start-up, the channels' bytes and rate), the stage-in
    container's log being the only place its cost shows from inside the pod."""
    from .staging import restore_checkpoints, stage_in, write_config_files

    begun = time.monotonic()
    write_config_files(job, layout, host)
    tally = _Tally()
    stage_in(job, layout, host, progress=tally)
    seconds = time.monotonic() - begun
    restored = restore_checkpoints(job, layout)
    mib = tally.bytes / 2**20
    startup = f"start-up {begun - started:.2f} s, " if started is not None else ""
    print(f"staged {len(job.spec.inputs)} channel(s) for {host.current_host} "
          f"({startup}{mib:.1f} MiB in {seconds:.2f} s = {mib / max(seconds, 1e-3):.0f} MiB/s); "
          f"restored {restored} checkpoint file(s)", flush=True)


def stage_out_command(job: TrainingJob, layout: Layout, host: HostInfo, output_uri: str) -> None:
    """Checkpoints from every host; model, output and metrics from the first.
    The model is uploaded only when the trainer wrote no failure reason. An empty
    failure file is none: on Kubernetes it is the trainer's terminationMessagePath,
    whose mount point the container runtime creates, empty, in the shared volume."""
    from .staging import ArtifactURIs, stage_out_model, sync_checkpoints, sync_tensorboard

    sync_checkpoints(job, layout)
    if host.rank != 0:
        return
    artifacts = ArtifactURIs.for_job(output_uri, job.metadata.namespace, job.name)
    upload_metrics(job, layout, host, output_uri)
    sync_tensorboard(layout, artifacts)
    if not _has_failure(layout):
        stage_out_model(layout, artifacts)
    print(f"staged out to {artifacts.root}", flush=True)


def upload_metrics(job: TrainingJob, layout: Layout, host: HostInfo, output_uri: str,
                   last: bytes | None = None) -> bytes | None:
    """The first host's metrics file (``log_metric``'s records) to the job's
    metrics object, unless it equals ``last``: uploaded while training too, so
    a tuning job's early stopping reads each epoch's objective as it comes.
    Returns what the store now holds."""
    from .staging import ArtifactURIs
    from .storage import open_store

    if host.rank != 0:
        return None
    # The trainer's own file, read without following a link it may have planted.
    metrics = untrusted.read_file(layout.root, os.path.relpath(layout.metrics_file, layout.root),
                                  limit=METRICS_LIMIT)
    if metrics is not None and metrics != last:
        uri = ArtifactURIs.for_job(output_uri, job.metadata.namespace, job.name).metrics
        open_store(uri).write_bytes(uri, metrics)
    return metrics if metrics is not None else last


def _has_failure(layout: Layout) -> bool:
    return bool(untrusted.read_file(layout.root, os.path.relpath(layout.failure_file, layout.root), limit=1))


def sync_command(job: TrainingJob, layout: Layout, host: HostInfo, output_uri: str,
                 interval: float, stop: threading.Event) -> None:
    from .staging import ArtifactURIs, sync_checkpoints, sync_tensorboard

    uploaded: bytes | None = None
    while not stop.wait(interval):
        try:
            sync_checkpoints(job, layout)
        except TrainforgeError as exc:
            print(f"checkpoint sync failed (will retry): {exc}", flush=True)
        try:
            uploaded = upload_metrics(job, layout, host, output_uri, uploaded)
        except TrainforgeError as exc:
            print(f"metrics sync failed (will retry): {exc}", flush=True)
        if host.rank == 0:  # TensorBoard while it trains: the first host's, as on the local backends
            try:
                sync_tensorboard(layout, ArtifactURIs.for_job(output_uri, job.metadata.namespace, job.name))
            except (TrainforgeError, OSError) as exc:
                print(f"TensorBoard log sync failed (will retry): {exc}", flush=True)
    stage_out_command(job, layout, host, output_uri)


def _process_started() -> float | None:
    """When this process started, on the monotonic clock (Linux: /proc)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m trainforge.stage", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["in", "sync", "out"])
    parser.add_argument("--root", default=env.get("TRAINFORGE_ROOT", "/opt/ml"))
    parser.add_argument("--interval", type=float, default=float(env.get("TRAINFORGE_SYNC_SECONDS", "60")))
    args = parser.parse_args(argv)
    stop = threading.Event()
    if args.command == "sync":
        # First of all: the sidecar is its container's PID 1, which the kernel
        # spares a signal it has no handler for. A trainer that ends within the
        # sidecar's start-up would have its SIGTERM lost and the pod held for
        # the whole grace period.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        job = _job(env)
        layout, host = Layout(args.root), _host(job, env)
        output_uri = env.get("TRAINFORGE_OUTPUT_URI") or (job.spec.output.uri if job.spec.output else "")
        if args.command == "in":
            stage_in_command(job, layout, host, started=_process_started())
        elif args.command == "out":
            stage_out_command(job, layout, host, output_uri)
        else:
            sync_command(job, layout, host, output_uri, args.interval, stop)
    except (TrainforgeError, KeyError, ValueError) as exc:
        from .uris import redact_userinfo

        message = redact_userinfo(f"stager {args.command}: {exc}")
        print(message, file=sys.stderr, flush=True)
        if args.command == "in":  # the pod's termination message explains why nothing ran
            os.makedirs(args.root, exist_ok=True)
            untrusted.write_file(args.root, "output/failure", message[:1024].encode("utf-8", errors="replace"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
