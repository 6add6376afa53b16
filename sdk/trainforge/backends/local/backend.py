"""LocalBackend: jobs on this machine, under a detached supervisor each, with
their state in ``<home>/jobs/<name>/`` so any process can list, follow and
stop them. ``process`` runs a trainer source directory, ``container`` an image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ...config import Settings, load_settings
from ...artifacts import tenancy_issues
from ...errors import BackendError, JobNotFound, SpecError, SpecIssue
from ...instances import lookup
from ...metrics import MetricRecord
from ...spec import Phase, TrainingJob, check_job_name
from .jobdir import JobDir
from .launchers import make_launcher
from .orphans import end_orphan
from .records import job_metric_records

FOLLOW_POLL_SECONDS = 0.05


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_job_name(name: str) -> bool:
    try:
        check_job_name(name)
    except SpecError:
        return False  # something else in the jobs folder: not a job
    return True


class LocalBackend:
    def __init__(self, kind: str = "process", settings: Settings | None = None, **options: str):
        self.name = kind
        self.settings = settings or load_settings()
        self.options = options
        self.launcher = make_launcher(kind, options)

    # -- paths -------------------------------------------------------------------
    def jobdir(self, name: str) -> JobDir:
        # Every lookup comes through here: a name is checked before it becomes a path.
        return JobDir(self.settings.jobs_root / check_job_name(name))

    def _existing(self, name: str) -> JobDir:
        jobdir = self.jobdir(name)
        if not jobdir.job_file.exists():
            raise JobNotFound(f"no local job named {name!r} (in {self.settings.jobs_root})")
        return jobdir

    def default_output(self) -> str:
        return "local://trainforge-artifacts/"

    def default_data_root(self) -> str:
        return "local://trainforge-data/"

    # -- Backend protocol ----------------------------------------------------------
    def validate(self, job: TrainingJob) -> None:
        issues = []
        try:
            lookup(job.spec.instance.type)
        except KeyError as exc:
            issues.append(SpecIssue("spec.instance.type", str(exc.args[0])))
        if job.spec.instance.count > 1:
            issues.append(SpecIssue("spec.instance.count", f"the {self.name} backend runs one host, got "
                                    f"{job.spec.instance.count} (multi-host jobs need the kubernetes backend)"))
        issues.extend(tenancy_issues(job, self.default_output()))
        if issues:
            raise SpecError(issues)
        jobdir = self.jobdir(job.name)
        if jobdir.path.exists():  # before submit_job uploads data under the name
            raise jobdir.exists_error()
        self.launcher.check(job.spec.image)
        check_gpus = getattr(self.launcher, "check_gpus", None)  # optional capability
        if check_gpus is not None:
            check_gpus(lookup(job.spec.instance.type).gpus)
        self._check_home()

    def _check_home(self) -> None:
        """BackendError naming the folder if local state cannot be written."""
        root = self.settings.jobs_root
        try:
            root.mkdir(parents=True, exist_ok=True)
            writable = os.access(root, os.W_OK | os.X_OK)
            problem = "" if writable else "permission denied"
        except OSError as exc:
            problem = exc.strerror or str(exc)
        if problem:
            raise BackendError(f"cannot keep local jobs in {root}: {problem} "
                               f"(set TRAINFORGE_HOME to a writable folder; now {self.settings.home})")

    def submit(self, job: TrainingJob) -> None:
        self.validate(job)
        output = job.spec.output.uri if job.spec.output else self.default_output()
        jobdir = self.jobdir(job.name)
        jobdir.create(job, {"kind": self.name, "options": self.options, "output": output})
        log = open(jobdir.supervisor_log, "ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "trainforge.backends.local.supervisor", str(jobdir.path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the submitting process and its Ctrl-C
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH", "")) if p)},
            )
        finally:
            log.close()
        jobdir.pid_file.write_text(str(process.pid))

    def get(self, name: str) -> TrainingJob:
        jobdir = self._existing(name)
        job = jobdir.read_job()
        status = job.status
        assert status is not None
        if not status.phase.finished and jobdir.pid_file.exists() and not _alive(jobdir.supervisor_pid()):
            # Re-read: the supervisor may have written its last status as it exited.
            status = jobdir.read_status()
            if not status.phase.finished:
                status.phase = Phase.FAILED
                status.failure_reason = status.message = (
                    f"the local supervisor process died (see {jobdir.supervisor_log})")
                record = jobdir.read_trainer()
                if record:  # a Failed job must not go on training
                    ended = end_orphan(record)
                    if ended:
                        with open(jobdir.supervisor_log, "a", encoding="utf-8") as log:
                            log.write(f"trainforge: the supervisor died; {ended} (by pid {os.getpid()})\n")
                    jobdir.clear_trainer()
        job.status = status
        return job

    def list(self) -> list[TrainingJob]:
        root = self.settings.jobs_root
        if not root.is_dir():
            return []
        jobs = []
        for path in root.iterdir():
            if _is_job_name(path.name) and (path / "job.json").exists():
                try:
                    jobs.append(self.get(path.name))
                except BackendError:
                    continue  # a damaged job folder; `status NAME` says what is wrong with it
        return sorted(jobs, key=lambda j: (j.status.start_time or "", j.name) if j.status else ("", j.name))

    def logs(self, name: str, follow: bool = False) -> Iterator[str]:
        jobdir = self._existing(name)
        attempt, offset, pending = 1, 0, ""
        while True:
            finished = self.get(name).status.phase.finished  # type: ignore[union-attr]
            path = jobdir.log_file(attempt)
            if path.exists():
                with open(path, encoding="utf-8", errors="replace") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
                lines = (pending + chunk).split("\n")
                pending = lines.pop()
                yield from lines
            if jobdir.log_file(attempt + 1).exists():
                if pending:
                    yield pending
                attempt, offset, pending = attempt + 1, 0, ""
                yield f"--- attempt {attempt} ---"
                continue
            if finished or not follow:
                if pending:
                    yield pending
                return
            time.sleep(FOLLOW_POLL_SECONDS)

    def metrics(self, name: str) -> list[MetricRecord]:
        return job_metric_records(self._existing(name))

    def stop(self, name: str) -> None:
        jobdir = self._existing(name)
        if self.get(name).status.phase.finished:  # type: ignore[union-attr]
            return
        jobdir.request_stop()
        pid = jobdir.supervisor_pid()
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass

    def delete(self, name: str) -> None:
        import shutil

        jobdir = self._existing(name)
        if not self.get(name).status.phase.finished:  # type: ignore[union-attr]
            raise BackendError(f"job {name!r} is still running; stop it first")
        shutil.rmtree(jobdir.path)
