"""The process that owns one local job from submit to its final status.

Started detached by the local backend (``python -m
trainforge.backends.local.supervisor JOB_DIR``); it is the only writer of the
job's status. Lifecycle per attempt: stage in -> restore checkpoints -> run the
trainer (logs to a file, metric regexes applied, checkpoints synced, deadline
and stop requests enforced with SIGTERM then a grace period) -> judge -> retry
or stage out. A partial model is never uploaded.

A multi-host job (instance count N > 1, process backend) runs N trainers,
algo-1..algo-N, each with its own contract root and log, the torchrun
variables pointing at 127.0.0.1 and a port free for this attempt; they are
one attempt (hostgroup.py): when one fails the others are ended. algo-1 is
rank 0: its metrics are the job's, its checkpoints are synced and its model
ships.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ... import untrusted
from ..._time import utc_now
from ...contract import FAILURE_REASON_LIMIT, HostInfo, contract_env, host_names, read_failure_reason
from ...errors import TrainforgeError, TransferCancelled
from ...instances import lookup
from ...metrics import MetricParser, final_values
from ...conditions import enter_phase, started_locally
from ...spec import Phase, TrainingJob
from ...staging import (
    ArtifactURIs, fastfile_folders, restore_checkpoints, stage_in, stage_out_model, sync_checkpoints,
    sync_tensorboard, write_config_files,
)
from ...storage import open_store
from ...storage.progress import CancellableProgress
from ...uris import redact_userinfo
from .jobdir import JobDir
from .hostgroup import HostGroup, free_port
from .launchers import Launched, Launcher, make_launcher
from .lifecycle import AttemptEnd, judge
from .records import job_metric_records

CHECKPOINT_SYNC_SECONDS = 30.0
COLUMNS_BUDGET = 16 << 20  # metric bytes turned into columns per sync (about 200,000 records)
FAILURE_FILE = "output/failure"  # below the run folder
POLL_SECONDS = 0.1
STOPPED_IN_STAGE_IN = "stopped during stage-in"


def say(text: str) -> None:
    """A line for supervisor.log; a full disk must not end the supervisor."""
    try:
        print(text, flush=True)
    except OSError:
        pass


class Supervisor:
    def __init__(self, jobdir: JobDir):
        self.jobdir = jobdir
        document = jobdir.read_document()
        self.job: TrainingJob = jobdir.read_job()
        self.launcher: Launcher = make_launcher(document["backend"]["kind"], document["backend"].get("options"))
        self.output_uri: str = document["backend"]["output"]
        self.artifacts = ArtifactURIs.for_job(self.output_uri, self.job.metadata.namespace, self.job.name)
        self.status = jobdir.read_status()
        self.terminate_requested = threading.Event()
        self.training_seconds = 0.0
        self.hosts = host_names(self.job.name, self.job.spec.instance.count)
        self.last_output: dict[str, str] = {}  # host -> its last output line, this attempt
        self.output_error: str | None = None  # set by the log pump when it cannot record
        self.output_failed = threading.Event()

    @functools.cached_property
    def channel_mounts(self) -> dict[str, str]:
        """FastFile folders the launcher shows read-only at their channel's path:
        from the spec, never from what a trainer left in the run folder."""
        return fastfile_folders(self.job) if self.launcher.mounts_channels else {}

    # -- status ---------------------------------------------------------------
    def set_phase(self, phase: Phase, message: str = "", reason: str | None = None) -> None:
        # Messages carry error texts, and those may name an endpoint URL with credentials.
        message = redact_userinfo(message)
        reason = None if reason is None else redact_userinfo(reason)
        now = utc_now()
        status = self.status.model_copy(deep=True)
        if phase.finished:
            status.conditions = enter_phase(status.conditions, phase.value, message, now)
        elif phase == Phase.STAGING:  # the attempt's hosts start here (the cluster's Created + Scheduled)
            status.conditions = started_locally(status.conditions, now)
        status.phase, status.message = phase, message
        if reason is not None:
            status.failure_reason = reason
        if phase == Phase.TRAINING and status.start_time is None:
            status.start_time = now
        if phase.finished:
            status.end_time = now
            status.billable_seconds = int(math.ceil(self.training_seconds))
        self.status = status
        self.jobdir.write_status(status)

    # -- one attempt ------------------------------------------------------------
    def prepare(self, attempt: int) -> None:
        if attempt == 1:
            self.set_phase(Phase.STAGING, "downloading input channels")
        for name in self.hosts:
            self.prepare_host(attempt, HostInfo(name, self.hosts))

    def prepare_host(self, attempt: int, host: HostInfo) -> None:
        layout = self.jobdir.host_layout(host.current_host)
        # The run folder was the last attempt's trainer's: nothing below touches
        # it through a link (see trainforge.untrusted).
        write_config_files(self.job, layout, host)
        untrusted.remove(layout.root, FAILURE_FILE)  # a stale one would blame this attempt
        if attempt > 1:
            # What a failed attempt left in model/ and output/data/ must not ship with a later one.
            for folder in (layout.model_dir, layout.output_data_dir):
                untrusted.reset_dir(layout.root, os.path.relpath(folder, layout.root))
        if attempt == 1:
            try:  # a stop cancels the download midway (checked per chunk and file)
                stage_in(self.job, layout, host, in_place=self.channel_mounts,
                         progress=CancellableProgress(self.stop_wanted, STOPPED_IN_STAGE_IN))
            except TransferCancelled:
                untrusted.remove(layout.root, os.path.relpath(layout.data_dir, layout.root))  # what arrived is no use
                raise
        # Every host resumes from the same (rank 0's) checkpoints.
        restored = restore_checkpoints(self.job, layout)
        if restored:
            say(f"restored {restored} checkpoint files" + (f" for {host.current_host}" if len(self.hosts) > 1 else ""))

    def host_env(self, attempt: int, host: HostInfo, master_port: int) -> dict[str, str]:
        instance = lookup(self.job.spec.instance.type)
        container_layout = self.launcher.layout(self.jobdir.host_run_dir(host.current_host))
        env = contract_env(
            job_name=self.job.name, layout=container_layout, hyperparameters=self.job.spec.hyperparameters,
            inputs=self.job.spec.inputs, host=host, instance=instance,
            num_cpus=os.cpu_count() if self.launcher.kind == "process" else None,
            master_port=master_port, attempt=attempt,
        )
        if len(host.hosts) > 1:
            env["MASTER_ADDR"] = "127.0.0.1"  # every host is a process on this machine
        env.update(self.job.spec.env)
        return env

    def launch_hosts(self, attempt: int) -> HostGroup:
        instance = lookup(self.job.spec.instance.type)
        port = free_port() if len(self.hosts) > 1 else 29500
        group = HostGroup([], self.job.spec.stopping.grace_period_seconds)
        try:
            for name in self.hosts:
                env = self.host_env(attempt, HostInfo(name, self.hosts), port)
                group.members.append(self.launcher.launch(self.job.spec.image, self.jobdir.host_run_dir(name), env,
                                                          instance.gpus, channels=self.channel_mounts))
        except BaseException:
            group.kill()  # the hosts already started must not wait for a peer that never comes
            raise
        return group

    def run_attempt(self, attempt: int, deadline: float) -> AttemptEnd:
        self.set_phase(Phase.TRAINING, f"attempt {attempt} of {self.job.spec.retry.max_attempts}")
        self.status.attempts = attempt
        self.jobdir.write_status(self.status)
        started = time.monotonic()
        self.last_output = {}
        self.output_error = None
        self.output_failed.clear()
        launched = self.launch_hosts(attempt)
        try:
            self.jobdir.record_trainer(launched.record())  # if this process dies, a reader ends it
        except OSError:  # a full disk: an unrecorded trainer could outlive us unseen
            launched.kill()
            raise
        pumps = [threading.Thread(target=self.pump_logs, args=(member, attempt, name), daemon=True)
                 for name, member in zip(self.hosts, launched.members, strict=True)]
        for pump in pumps:
            pump.start()
        stopped = timed_out = output_failed = False
        next_sync = time.monotonic() + CHECKPOINT_SYNC_SECONDS
        while launched.poll() is None:
            if not (stopped or timed_out):
                if self.terminate_requested.is_set() or self.jobdir.stop_requested:
                    stopped = True
                elif time.monotonic() >= deadline:
                    timed_out = True
                elif self.output_failed.is_set():
                    say(f"ending the trainer: {self.output_error}")
                    output_failed = True
                if stopped or timed_out or output_failed:
                    self.end_trainer(launched)
                    break
            if time.monotonic() >= next_sync:
                self.try_sync_checkpoints()
                next_sync = time.monotonic() + CHECKPOINT_SYNC_SECONDS
            time.sleep(POLL_SECONDS)
        code = launched.wait()
        for pump in pumps:
            pump.join(timeout=10)
        launched.cleanup()
        self.jobdir.clear_trainer()
        self.training_seconds += time.monotonic() - started
        # The host that failed first is the cause; its peers were ended for it.
        culprit = self.hosts[launched.failed_rank or 0]
        failure = self.failure_text(culprit)
        if failure is None and code not in (0, None):
            failure = next(filter(None, (self.failure_text(name) for name in self.hosts)), None)
        last = self.last_output.get(culprit)
        if failure and len(self.hosts) > 1:
            failure = f"{culprit}: {failure}"
        elif last and len(self.hosts) > 1:
            last = f"{culprit}: {last}"
        return AttemptEnd(exit_code=code, stopped=stopped, timed_out=timed_out, failure_text=failure,
                          last_output=last, output_error=self.output_error)

    def failure_text(self, host: str) -> str | None:
        root = str(self.jobdir.host_run_dir(host))
        raw = untrusted.read_file(root, FAILURE_FILE, limit=4 * FAILURE_REASON_LIMIT)
        return read_failure_reason(raw.decode("utf-8", errors="replace")) if raw is not None else None

    def end_trainer(self, launched: Launched | HostGroup) -> None:
        """SIGTERM, the grace period for a last checkpoint, then SIGKILL."""
        launched.terminate()
        grace = self.job.spec.stopping.grace_period_seconds
        try:
            launched.wait(timeout=grace)
        except Exception:
            launched.kill()

    def pump_logs(self, launched: Launched, attempt: int, host: str = "algo-1") -> None:
        """Trainer output into the attempt's log and metric records, until the
        output closes. If they cannot be written (a full disk), say so to the
        poll loop, which ends the trainer, and go on draining the pipe: a
        trainer blocked on a full pipe could neither train nor take SIGTERM.
        Only the first host's lines feed the metric regexes (the job's series)."""
        parser = MetricParser(self.job.spec.metrics) if host == self.hosts[0] else None
        log_path, metrics_path = self.jobdir.log_file(attempt, host), self.jobdir.metrics_file
        files: list[Any] = []
        log: Any = None
        metrics: Any = None
        where = log_path
        try:
            log_path.parent.mkdir(exist_ok=True)
            log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed below)
            files.append(log)
            where = metrics_path
            if parser is not None:
                metrics = open(metrics_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
                files.append(metrics)
        except OSError as exc:
            self.record_output_error(where, exc)
        for line in launched.lines():
            if self.output_failed.is_set():
                continue  # drain and drop
            try:
                where = log_path
                log.write(line + "\n")
                if line.strip():
                    self.last_output[host] = line.strip()
                where = metrics_path
                for record in parser.feed(line, time.time()) if parser is not None else ():
                    metrics.write(record.to_json() + "\n")
            except Exception as exc:  # the pump must never die with the pipe full
                self.record_output_error(where, exc)
        for handle in files:
            try:
                handle.close()
            except OSError as exc:
                if not self.output_failed.is_set():
                    self.record_output_error(Path(handle.name), exc)

    def record_output_error(self, path: Path, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            what = exc.strerror or str(exc)
            self.output_error = f"cannot write the trainer's output to {path}: {what}; the trainer was ended"
        else:
            self.output_error = (f"the local supervisor could not record the trainer's output "
                                 f"({type(exc).__name__}: {exc}); the trainer was ended")
        self.output_failed.set()

    def try_sync_checkpoints(self) -> None:
        try:  # the TensorBoard folder goes with the checkpoints: a live view while it trains
            sync_tensorboard(self.jobdir.layout, self.artifacts, scratch=str(self.jobdir.path))
        except (TrainforgeError, OSError) as exc:
            say(f"TensorBoard log sync failed (will retry): {exc}")
        try:
            sync_checkpoints(self.job, self.jobdir.layout, scratch=str(self.jobdir.path))
        except TrainforgeError as exc:
            say(f"checkpoint sync failed (will retry): {exc}")
        self.try_update_columns()

    def try_update_columns(self, budget: int | None = COLUMNS_BUDGET) -> None:
        """The dashboard's columnar copy of the metrics, a chunk at a time while
        it trains (``budget`` bytes at most: the poll loop waits), so the job's
        end parses only its last lines."""
        from . import metric_columns  # numpy: imported when a job first syncs, not at start-up

        try:
            metric_columns.update(self.jobdir, budget)
        except (OSError, ValueError) as exc:  # a cache: readers rebuild it
            say(f"metric columns not updated: {exc}")

    def stop_wanted(self) -> bool:
        return self.terminate_requested.is_set() or self.jobdir.stop_requested

    def stopped_before_start(self) -> bool:
        if self.stop_wanted():
            self.set_phase(Phase.STOPPED, "stopped before the trainer started", "stopped on request")
            return True
        return False

    # -- the whole job ------------------------------------------------------------
    def run(self) -> None:
        spec = self.job.spec
        deadline = time.monotonic() + spec.stopping.max_runtime_seconds
        verdict = None
        attempt = 0
        try:
            while attempt < spec.retry.max_attempts:
                attempt += 1
                if self.stopped_before_start():
                    return
                try:
                    self.prepare(attempt)
                except TransferCancelled:
                    self.set_phase(Phase.STOPPED, STOPPED_IN_STAGE_IN, "stopped on request")
                    return
                if self.stopped_before_start():  # a stop during a long download
                    return
                end = self.run_attempt(attempt, deadline)
                self.try_sync_checkpoints()
                verdict = judge(end, attempt, spec.retry.max_attempts, spec.stopping.max_runtime_seconds)
                if verdict.phase is not None:
                    break
                say(f"attempt {attempt} failed ({verdict.reason}); retrying from the latest checkpoint")
            assert verdict is not None and verdict.phase is not None
            self.set_phase(Phase.UPLOADING, "uploading logs, metrics" + (" and the model" if verdict.phase == Phase.COMPLETED else ""))
            reason = verdict.reason
            try:
                self.stage_out(success=verdict.phase == Phase.COMPLETED)
            except TrainforgeError as exc:
                if verdict.phase == Phase.COMPLETED:
                    raise
                # The attempt's own reason stays first: it is why the job ended.
                reason = f"{reason}; uploading its logs and metrics failed too: {exc}"
            message = "training finished" if verdict.phase == Phase.COMPLETED else (reason or "")
            self.set_phase(verdict.phase, message, reason)
        except TrainforgeError as exc:
            self.fail(str(exc))
        except OSError as exc:  # the job folder itself: a full or read-only disk
            self.fail(f"the local supervisor cannot write {exc.filename or self.jobdir.path}: {exc.strerror or exc}")
        except Exception as exc:  # an honest status even for our own bugs
            with contextlib.suppress(OSError):
                print(redact_userinfo(traceback.format_exc()), end="", file=sys.stderr, flush=True)
            self.fail(f"internal error in the local supervisor: {type(exc).__name__}: {exc}")
        finally:
            self.jobdir.clear_scratch()

    def stage_out(self, success: bool) -> None:
        sync_tensorboard(self.jobdir.layout, self.artifacts, scratch=str(self.jobdir.path))
        self.try_update_columns(budget=None)
        records = job_metric_records(self.jobdir)
        self.status.final_metrics = final_values(records)
        artifacts = self.status.artifacts.model_copy()
        store = open_store(self.artifacts.metrics)
        store.write_bytes(self.artifacts.metrics, "".join(r.to_json() + "\n" for r in records).encode())
        artifacts.metrics = self.artifacts.metrics
        for host in self.hosts:
            for attempt, log in enumerate(self.jobdir.log_files(host), start=1):
                store.upload_file(str(log), self.artifacts.log(host, attempt))
        artifacts.logs = self.artifacts.logs
        if self.job.spec.checkpoints:
            artifacts.checkpoints = self.job.spec.checkpoints.uri
        if success:
            # Archives are packed in the job's own scratch folder, never the system temp
            # dir: if this process is killed midway, the reader that finds it dead sweeps it.
            os.makedirs(self.jobdir.scratch_dir, exist_ok=True)
            artifacts.model, artifacts.output = stage_out_model(self.jobdir.layout, self.artifacts,
                                                                scratch=str(self.jobdir.scratch_dir))
        self.status.artifacts = artifacts

    def fail(self, reason: str) -> None:
        say(f"job failed: {redact_userinfo(reason)}")
        self.set_phase(Phase.FAILED, reason, reason)


def main(argv: list[str]) -> int:
    os.umask(os.umask(0) | 0o022)  # nothing this process creates is group- or world-writable
    jobdir = JobDir(Path(argv[1]))
    supervisor = Supervisor(jobdir)
    # SIGTERM to the supervisor means "stop the job", handled by the poll loop.
    signal.signal(signal.SIGTERM, lambda *_: supervisor.terminate_requested.set())
    jobdir.clear_scratch()  # a previous run's, should there be one
    jobdir.mark_started()  # the submitter waits for this (backend.py)
    supervisor.run()
    return 0 if supervisor.status.phase == Phase.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
