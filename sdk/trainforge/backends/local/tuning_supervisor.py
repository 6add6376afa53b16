"""The process that drives one local tuning job (``python -m
trainforge.backends.local.tuning_supervisor TUNING_DIR``).

Every pass: observe the trials (local jobs and their metrics), ask the engine
for a plan, carry it out (stop trials, submit new ones), write the status.
It keeps nothing the disk does not hold: killed and restarted, it rebuilds
the search from the trials and neither loses nor repeats one.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from ..._time import parse_time, utc_now
from ...conditions import tuning_phase
from ...errors import BackendError, TrainforgeError
from ...spec.tuning import BestTrial, TuningJob, TuningJobStatus
from ...tuning import TrialRecord, plan
from ...tuning.engine import Plan, StudyMemo
from ...tuning.trials import trial_job, trial_name
from .tuning import LocalTuning, TuningDir

PASS_SECONDS = 1.0


def _elapsed(status: TuningJobStatus) -> float:
    if status.start_time is None:
        return 0.0
    return (datetime.now(timezone.utc) - parse_time(status.start_time)).total_seconds()


class TuningSupervisor:
    def __init__(self, tdir: TuningDir):
        self.tdir = tdir
        document = tdir.read_document()
        self.tuning: TuningJob = TuningJob.model_validate(document["tuning"])
        backend = document["backend"]
        self.local = LocalTuning(backend["kind"], **(backend.get("options") or {}))
        self.status = tdir.read_status()
        self.terminate = threading.Event()
        self.warm = self._warm_records()
        self.memo = StudyMemo()  # only speed: a restarted supervisor rebuilds it from the trials

    def _warm_records(self) -> list[TrialRecord]:
        parents = self.tuning.spec.warm_start.parents if self.tuning.spec.warm_start else []
        out: list[TrialRecord] = []
        for parent in parents:
            out.extend(self.local.records(parent))
        return out

    def write_status(self, step: Plan, phase: str, message: str, reason: str | None = None) -> None:
        status = self.status.model_copy(deep=True)
        now = utc_now()
        if status.phase != phase:
            status.conditions = tuning_phase(status.conditions, phase, message, now)
        status.phase, status.message, status.trials = phase, message, step.counts
        if reason is not None:
            status.failure_reason = reason
        if step.best is not None and step.best.final_objective is not None:
            status.best_trial = BestTrial(name=step.best.name, number=step.best.number,
                                          objective=step.best.final_objective,
                                          hyperparameters=dict(step.best.hyperparameters))
        if status.start_time is None:
            status.start_time = now
        if phase in ("Completed", "Failed", "Stopped"):
            status.end_time = now
        if status != self.status:
            self.status = status
            self.tdir.write_status(status)

    def carry_out(self, step: Plan, trials: list[TrialRecord]) -> None:
        known = self.tdir.early_stops()
        for number, reason in step.stop:
            if number not in known and step.finished is None:
                self.tdir.record_early_stop(number, reason)  # before the stop, so a crash cannot lose why
            self.local.jobs.stop(trial_name(self.tuning.name, number))
        next_number = max((t.number for t in trials), default=-1) + 1
        for offset, hyperparameters in enumerate(step.new):
            job = trial_job(self.tuning, next_number + offset, hyperparameters)
            try:
                self.local.jobs.submit(job)
            except BackendError as exc:
                if not self.local.jobs.jobdir(job.name).job_file.exists():
                    raise  # no trial came of it: nothing the next pass would see
                # The trial exists and its end is on disk (Failed): it counts like any
                # failed trial, against limits.maxFailedTrials, not as the tuning job's end.
                print(f"trial {job.name}: {exc}", flush=True)
                continue
            print(f"trial {job.name}: {hyperparameters}", flush=True)

    def run(self) -> None:
        spec = self.tuning.spec
        while True:
            trials = self.local.records(self.tuning.name, self.tuning)
            stop_requested = self.terminate.is_set() or self.tdir.stop_requested
            step = plan(spec, trials, _elapsed(self.status), stop_requested, self.warm, self.memo)
            if step.finished is not None:
                phase, message = step.finished
                for number, _ in step.stop:
                    self.local.jobs.stop(trial_name(self.tuning.name, number))
                if any(t.state.active for t in trials):
                    self.write_status(step, self.status.phase if self.status.phase != "Pending" else "Running",
                                      f"ending ({message}): waiting for {sum(t.state.active for t in trials)} trials")
                    time.sleep(PASS_SECONDS)
                    continue
                self.write_status(step, phase, message, message if phase == "Failed" else None)
                print(f"tuning job {phase.lower()}: {message}", flush=True)
                return
            self.carry_out(step, trials)
            active = step.counts.pending + step.counts.running + len(step.new)
            self.write_status(step, "Running", f"{len(trials) + len(step.new)} of {spec.limits.max_trials} trials "
                                               f"started, {active} active")
            self.terminate.wait(PASS_SECONDS)

    def fail(self, reason: str) -> None:
        print(f"tuning job failed: {reason}", flush=True)
        self.write_status(Plan(counts=self.status.trials), "Failed", reason, reason)


def main(argv: list[str]) -> int:
    supervisor = TuningSupervisor(TuningDir(Path(argv[1])))
    signal.signal(signal.SIGTERM, lambda *_: supervisor.terminate.set())
    try:
        supervisor.run()
    except TrainforgeError as exc:
        supervisor.fail(str(exc))
    except Exception as exc:  # an honest status even for our own bugs
        traceback.print_exc()
        supervisor.fail(f"internal error in the tuning supervisor: {type(exc).__name__}: {exc}")
    return 0 if supervisor.status.phase == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
