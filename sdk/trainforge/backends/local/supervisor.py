"""The process that owns one local job from submit to its final status.

Started detached by the local backend (``python -m
trainforge.backends.local.supervisor JOB_DIR``); it is the only writer of the
job's status. Lifecycle per attempt: stage in -> restore checkpoints -> run the
trainer (logs to a file, metric regexes applied, checkpoints synced, deadline
and stop requests enforced with SIGTERM then a grace period) -> judge -> retry
or stage out. A partial model is never uploaded.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ..._time import utc_now
from ...contract import HostInfo, contract_env, host_names, read_failure_reason
from ...errors import TrainforgeError
from ...instances import lookup
from ...metrics import MetricParser, final_values
from ...spec import Condition, Phase, TrainingJob
from ...staging import (
    ArtifactURIs, restore_checkpoints, stage_in, stage_out_model, sync_checkpoints,
    write_config_files,
)
from ...storage import open_store
from ...uris import redact_userinfo
from .jobdir import JobDir
from .launchers import Launched, Launcher, make_launcher
from .lifecycle import AttemptEnd, judge
from .records import job_metric_records

CHECKPOINT_SYNC_SECONDS = 30.0
POLL_SECONDS = 0.1


class Supervisor:
    def __init__(self, jobdir: JobDir):
        self.jobdir = jobdir
        document = jobdir.read_document()
        self.job: TrainingJob = jobdir.read_job()
        self.launcher: Launcher = make_launcher(document["backend"]["kind"], document["backend"].get("options"))
        self.output_uri: str = document["backend"]["output"]
        self.artifacts = ArtifactURIs.for_job(self.output_uri, self.job.name)
        self.status = jobdir.read_status()
        self.terminate_requested = threading.Event()
        self.training_seconds = 0.0
        self.last_output: str | None = None  # of the current attempt

    # -- status ---------------------------------------------------------------
    def set_phase(self, phase: Phase, message: str = "", reason: str | None = None) -> None:
        # Messages carry error texts, and those may name an endpoint URL with credentials.
        message = redact_userinfo(message)
        reason = None if reason is None else redact_userinfo(reason)
        now = utc_now()
        status = self.status.model_copy(deep=True)
        if status.phase != phase:
            status.conditions.append(Condition(type=phase.value, status="True", reason=phase.value,
                                               message=message, last_transition_time=now))
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
    def prepare(self, attempt: int) -> HostInfo:
        hosts = host_names(self.job.name, self.job.spec.instance.count)
        host = HostInfo(hosts[0], hosts)
        layout = self.jobdir.layout
        write_config_files(self.job, layout, host)
        Path(layout.failure_file).unlink(missing_ok=True)  # a stale one would blame this attempt
        if attempt > 1:
            # What a failed attempt left in model/ and output/data/ must not ship with a later one.
            for folder in (layout.model_dir, layout.output_data_dir):
                shutil.rmtree(folder, ignore_errors=True)
                os.makedirs(folder, exist_ok=True)
        if attempt == 1:
            self.set_phase(Phase.STAGING, "downloading input channels")
            stage_in(self.job, layout, host)
        restored = restore_checkpoints(self.job, layout)
        if restored:
            print(f"restored {restored} checkpoint files", flush=True)
        return host

    def run_attempt(self, attempt: int, host: HostInfo, deadline: float) -> AttemptEnd:
        instance = lookup(self.job.spec.instance.type)
        container_layout = self.launcher.layout(self.jobdir.run_dir)
        env = contract_env(
            job_name=self.job.name, layout=container_layout, hyperparameters=self.job.spec.hyperparameters,
            inputs=self.job.spec.inputs, host=host, instance=instance,
            num_cpus=os.cpu_count() if self.launcher.kind == "process" else None,
            attempt=attempt, extra=dict(self.job.spec.env),
        )
        self.set_phase(Phase.TRAINING, f"attempt {attempt} of {self.job.spec.retry.max_attempts}")
        self.status.attempts = attempt
        self.jobdir.write_status(self.status)
        started = time.monotonic()
        self.last_output = None
        launched = self.launcher.launch(self.job.spec.image, self.jobdir.run_dir, env, instance.gpus)
        self.jobdir.record_trainer(launched.record())  # if this process dies, a reader ends it
        pump = threading.Thread(target=self.pump_logs, args=(launched, attempt), daemon=True)
        pump.start()
        stopped = timed_out = False
        next_sync = time.monotonic() + CHECKPOINT_SYNC_SECONDS
        while launched.poll() is None:
            if not (stopped or timed_out):
                if self.terminate_requested.is_set() or self.jobdir.stop_requested:
                    stopped = True
                elif time.monotonic() >= deadline:
                    timed_out = True
                if stopped or timed_out:
                    self.end_trainer(launched)
                    break
            if time.monotonic() >= next_sync:
                self.try_sync_checkpoints()
                next_sync = time.monotonic() + CHECKPOINT_SYNC_SECONDS
            time.sleep(POLL_SECONDS)
        code = launched.wait()
        pump.join(timeout=10)
        launched.cleanup()
        self.jobdir.clear_trainer()
        self.training_seconds += time.monotonic() - started
        failure = None
        if os.path.exists(self.jobdir.layout.failure_file):
            failure = read_failure_reason(Path(self.jobdir.layout.failure_file).read_text(errors="replace"))
        return AttemptEnd(exit_code=code, stopped=stopped, timed_out=timed_out, failure_text=failure,
                          last_output=self.last_output)

    def end_trainer(self, launched: Launched) -> None:
        """SIGTERM, the grace period for a last checkpoint, then SIGKILL."""
        launched.terminate()
        grace = self.job.spec.stopping.grace_period_seconds
        try:
            launched.wait(timeout=grace)
        except Exception:
            launched.kill()

    def pump_logs(self, launched: Launched, attempt: int) -> None:
        parser = MetricParser(self.job.spec.metrics)
        with open(self.jobdir.log_file(attempt), "a", encoding="utf-8", buffering=1) as log, \
                open(self.jobdir.metrics_file, "a", encoding="utf-8", buffering=1) as metrics:
            for line in launched.lines():
                log.write(line + "\n")
                if line.strip():
                    self.last_output = line.strip()
                for record in parser.feed(line, time.time()):
                    metrics.write(record.to_json() + "\n")

    def try_sync_checkpoints(self) -> None:
        try:
            sync_checkpoints(self.job, self.jobdir.layout)
        except TrainforgeError as exc:
            print(f"checkpoint sync failed (will retry): {exc}", flush=True)

    def stopped_before_start(self) -> bool:
        if self.jobdir.stop_requested or self.terminate_requested.is_set():
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
                host = self.prepare(attempt)
                if self.stopped_before_start():  # a stop during a long download
                    return
                end = self.run_attempt(attempt, host, deadline)
                self.try_sync_checkpoints()
                verdict = judge(end, attempt, spec.retry.max_attempts, spec.stopping.max_runtime_seconds)
                if verdict.phase is not None:
                    break
                print(f"attempt {attempt} failed ({verdict.reason}); retrying from the latest checkpoint", flush=True)
            assert verdict is not None and verdict.phase is not None
            self.set_phase(Phase.UPLOADING, "uploading logs, metrics" + (" and the model" if verdict.phase == Phase.COMPLETED else ""))
            self.stage_out(success=verdict.phase == Phase.COMPLETED)
            message = "training finished" if verdict.phase == Phase.COMPLETED else (verdict.reason or "")
            self.set_phase(verdict.phase, message, verdict.reason)
        except TrainforgeError as exc:
            self.fail(str(exc))
        except Exception as exc:  # an honest status even for our own bugs
            print(redact_userinfo(traceback.format_exc()), end="", file=sys.stderr, flush=True)
            self.fail(f"internal error in the local supervisor: {type(exc).__name__}: {exc}")

    def stage_out(self, success: bool) -> None:
        records = job_metric_records(self.jobdir)
        self.status.final_metrics = final_values(records)
        artifacts = self.status.artifacts.model_copy()
        store = open_store(self.artifacts.metrics)
        store.write_bytes(self.artifacts.metrics, "".join(r.to_json() + "\n" for r in records).encode())
        artifacts.metrics = self.artifacts.metrics
        for attempt, log in enumerate(self.jobdir.log_files(), start=1):
            store.upload_file(str(log), self.artifacts.log("algo-1", attempt))
        artifacts.logs = self.artifacts.logs
        if self.job.spec.checkpoints:
            artifacts.checkpoints = self.job.spec.checkpoints.uri
        if success:
            artifacts.model, artifacts.output = stage_out_model(self.jobdir.layout, self.artifacts)
        self.status.artifacts = artifacts

    def fail(self, reason: str) -> None:
        print(f"job failed: {redact_userinfo(reason)}", flush=True)
        self.set_phase(Phase.FAILED, reason, reason)


def main(argv: list[str]) -> int:
    jobdir = JobDir(Path(argv[1]))
    supervisor = Supervisor(jobdir)
    # SIGTERM to the supervisor means "stop the job", handled by the poll loop.
    signal.signal(signal.SIGTERM, lambda *_: supervisor.terminate_requested.set())
    supervisor.run()
    return 0 if supervisor.status.phase == Phase.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
