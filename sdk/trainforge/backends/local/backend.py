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
from typing import TYPE_CHECKING, NoReturn

from ..._time import utc_now
from ...artifacts import tenancy_issues
from ...conditions import enter_phase
from ...config import Settings, load_settings
from ...contract import host_names
from ...errors import BackendError, JobNotFound, SpecError, SpecIssue, TrainforgeError
from ...instances import lookup
from ...metrics import MetricRecord
from ...spec import Phase, TrainingJob, TrainingJobStatus, check_job_name
from ...staging import ArtifactURIs
from ...storage import open_store
from .forkstart import fork_refusal, fork_supervisor
from .jobdir import JobDir
from .launchers import make_launcher
from .orphans import end_orphan, process_start_ticks
from .records import job_metric_records

if TYPE_CHECKING:
    from .metric_columns import MetricColumns

FOLLOW_POLL_SECONDS = 0.05
FOLLOW_READ_SECONDS = 0.01
LOG_READ_CHARS = 1024 * 1024
# How long a new supervisor may take to write supervisor.started (imports on a
# loaded machine are slow); past it the submit fails and the job is Failed.
SUPERVISOR_START_SECONDS = 60.0
START_POLL_SECONDS = 0.02


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


def _runs_supervisor_of(pid: int, jobdir: JobDir) -> bool:
    """Is ``pid`` this job's supervisor (not a process that reused the pid)?"""
    start = jobdir.supervisor_start()
    if start is not None:  # a forked supervisor runs the submitter's command line: the start time tells
        return process_start_ticks(pid) == start
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return b"trainforge.backends.local.supervisor" in argv and os.fsencode(str(jobdir.path)) in argv


def terminate_supervisor(pid: int | None) -> None:
    """SIGTERM to a live supervisor: it stops what it runs the orderly way."""
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass


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
        count = job.spec.instance.count
        if count > 1 and self.name != "process":
            issues.append(SpecIssue("spec.instance.count", f"the {self.name} backend runs one host, got "
                                    f"{count} (multi-host jobs run on the process or kubernetes backend)"))
        elif count > 1 and not issues and lookup(job.spec.instance.type).gpus > 0:
            # N processes here would all be handed the same GPUs.
            issues.append(SpecIssue("spec.instance.count", f"{count} hosts of GPU instance type "
                                    f"{job.spec.instance.type!r}: multi-host jobs on the process backend run "
                                    "on CPU instance types (local, cpu-small, cpu-large)"))
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
        process: subprocess.Popen[bytes] | None = None
        try:
            if fork_refusal() is None:  # the submitter's imports are the supervisor's: no new interpreter
                pid = fork_supervisor(jobdir.path, jobdir.supervisor_log)
            else:
                process = self._exec_supervisor(jobdir)
                pid = process.pid
        except OSError as exc:  # no interpreter, no log file, no process slot
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            self._fail_unstarted(jobdir, f"the local supervisor could not be started ({what})")
        try:
            jobdir.record_supervisor(pid, process_start_ticks(pid))
        except OSError as exc:
            self._kill_unstarted(pid, process)
            self._fail_unstarted(jobdir, f"cannot record the supervisor in {jobdir.pid_file}: {exc.strerror or exc}")
        self._await_start(jobdir, pid, process)

    @staticmethod
    def _exec_supervisor(jobdir: JobDir) -> subprocess.Popen[bytes]:
        with open(jobdir.supervisor_log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "trainforge.backends.local.supervisor", str(jobdir.path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the submitting process and its Ctrl-C
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH", "")) if p)},
            )

    def _await_start(self, jobdir: JobDir, pid: int, process: subprocess.Popen[bytes] | None) -> None:
        """Wait for the supervisor's start record; a supervisor that exits or
        hangs before it fails the submit and leaves the job Failed, not Pending.
        ``process`` is None for a forked supervisor (not our child: no exit code)."""
        deadline = time.monotonic() + SUPERVISOR_START_SECONDS
        while not jobdir.started:
            exited = process.poll() is not None if process is not None else not _alive(pid)
            if exited and not jobdir.started and jobdir.stop_requested:
                # Stopped (SIGTERM) before it could take the signal: what was asked, not a failure.
                self._end_unstarted(jobdir, Phase.STOPPED, "stopped before its supervisor started",
                                    "stopped on request")
                return
            if exited and not jobdir.started:
                tail = jobdir.supervisor_log_tail()
                how = f" with code {process.returncode}" if process is not None else ""
                self._fail_unstarted(jobdir, f"the local supervisor exited{how} before it started the job"
                                     + (f": {tail}" if tail else "") + f" (see {jobdir.supervisor_log})")
            if not exited and time.monotonic() >= deadline:
                self._kill_unstarted(pid, process)
                self._fail_unstarted(jobdir, "the local supervisor did not start within "
                                     f"{SUPERVISOR_START_SECONDS:g} s "
                                     f"and was killed (see {jobdir.supervisor_log})")
            time.sleep(START_POLL_SECONDS)

    @staticmethod
    def _kill_unstarted(pid: int, process: subprocess.Popen[bytes] | None) -> None:
        # Its own session: pid == process group id; a forked one may not have called setsid yet.
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if process is not None:
            process.wait()

    def _fail_unstarted(self, jobdir: JobDir, reason: str) -> NoReturn:
        """Record ``reason`` as the job's end (no supervisor owns the status)
        and raise it as a BackendError naming the job."""
        self._end_unstarted(jobdir, Phase.FAILED, reason, reason)
        raise BackendError(f"job {jobdir.name!r} failed to start: {reason}")

    @staticmethod
    def _end_unstarted(jobdir: JobDir, phase: Phase, message: str, reason: str) -> None:
        """Write the end of a job whose supervisor never started (so none owns its status)."""
        status = jobdir.read_status()
        now = utc_now()
        status.conditions = enter_phase(status.conditions, phase.value, message, now)
        status.phase, status.message, status.failure_reason, status.end_time = phase, message, reason, now
        try:
            jobdir.write_status(status)
        except OSError:
            pass  # readers still see it ended: no supervisor runs (see get)

    def get(self, name: str) -> TrainingJob:
        jobdir = self._existing(name)
        job = jobdir.read_job()
        status = job.status
        assert status is not None
        reason = None if status.phase.finished else self._supervisor_gone(jobdir)
        if reason is not None:
            # Re-read: the supervisor may have written its last status as it exited.
            status = jobdir.read_status()
            if not status.phase.finished:
                status = self._end_abandoned(jobdir, status, reason)
        job.status = status
        return job

    @staticmethod
    def _supervisor_gone(jobdir: JobDir) -> str | None:
        """Why no supervisor owns this unfinished job any more, or None if one does."""
        pid = jobdir.supervisor_pid()
        try:
            overdue = time.time() - jobdir.job_file.stat().st_mtime > SUPERVISOR_START_SECONDS + 30
        except OSError:
            overdue = False
        if pid is None:
            # The submitter writes supervisor.pid right after the start: without one long
            # after the submit, it died in between (or could not write it).
            if not overdue:
                return None
            return "the local supervisor never started (no supervisor.pid; was the submitting process killed?)"
        if _alive(pid):
            if jobdir.started or not overdue or not _runs_supervisor_of(pid, jobdir):
                return None
            # Hung before it started, and the submitter that would have killed it is gone.
            try:
                os.killpg(pid, signal.SIGKILL)  # its own session: pid == process group id
            except ProcessLookupError:
                pass
            return (f"the local supervisor did not start within {SUPERVISOR_START_SECONDS:g} s "
                    f"and was killed (see {jobdir.supervisor_log})")
        if not jobdir.started:
            tail = jobdir.supervisor_log_tail()
            return ("the local supervisor exited before it started the job"
                    + (f": {tail}" if tail else "") + f" (see {jobdir.supervisor_log})")
        note = jobdir.full_disk_note()
        return f"the local supervisor process died (see {jobdir.supervisor_log})" + (f"; {note}" if note else "")

    def _end_abandoned(self, jobdir: JobDir, status: TrainingJobStatus, reason: str) -> TrainingJobStatus:
        """Failed, and what the dead supervisor left is ended and swept: its
        trainer, its scratch folder, its partial objects in the store."""
        status = status.model_copy(deep=True)
        status.phase = Phase.FAILED
        status.failure_reason = status.message = reason
        record = jobdir.read_trainer()
        if record:  # a Failed job must not go on training
            ended = end_orphan(record)
            if ended:
                try:
                    with open(jobdir.supervisor_log, "a", encoding="utf-8") as log:
                        log.write(f"trainforge: the supervisor died; {ended} (by pid {os.getpid()})\n")
                except OSError:
                    pass  # a full disk: the status says it all
            jobdir.clear_trainer()
        jobdir.clear_scratch()
        self._sweep_partial_uploads(jobdir)
        try:  # once recorded, the next reader has nothing to clean up
            jobdir.write_status(status)
        except OSError:
            pass
        return status

    @staticmethod
    def _sweep_partial_uploads(jobdir: JobDir) -> None:
        """Remove what an upload killed midway left in the store under the
        job's own artifact prefix (temp objects, unfinished multipart uploads)."""
        try:
            document = jobdir.read_document()
            namespace = document["job"].get("metadata", {}).get("namespace", "default")
            artifacts = ArtifactURIs.for_job(document["backend"]["output"], namespace, jobdir.name)
            store = open_store(str(artifacts.root))
            sweep = getattr(store, "sweep_partial", None)  # optional capability
            if sweep is not None:
                count = int(document["job"].get("spec", {}).get("instance", {}).get("count", 1))
                hosts = host_names(jobdir.name, count)
                logs = [artifacts.log(host, n) for host in hosts for n in range(1, len(jobdir.log_files(host)) + 1)]
                sweep(artifacts.root, [artifacts.model, artifacts.output, artifacts.metrics, *logs])
        except (TrainforgeError, OSError, KeyError, ValueError):
            pass  # best effort: a reader must not fail on it

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
        next_status = 0.0
        while True:
            # The log is read every FOLLOW_READ_SECONDS (a first line shows at once), the
            # status (job.json, status.json, is the supervisor alive) only every FOLLOW_POLL_SECONDS.
            # It is read before the log, so the log read after "finished" has its last line.
            finished = False
            if time.monotonic() >= next_status:
                finished = bool(self.get(name).status.phase.finished)  # type: ignore[union-attr]
                next_status = time.monotonic() + FOLLOW_POLL_SECONDS
            path = jobdir.log_file(attempt)
            if path.exists():
                with open(path, encoding="utf-8", errors="replace") as fh:
                    fh.seek(offset)
                    # In bounded reads: a log can be gigabytes (its lines are capped, see outputlines.py).
                    while chunk := fh.read(LOG_READ_CHARS):
                        lines = (pending + chunk).split("\n")
                        pending = lines.pop()
                        yield from lines
                    offset = fh.tell()
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
            time.sleep(FOLLOW_READ_SECONDS)

    def metrics(self, name: str) -> list[MetricRecord]:
        return job_metric_records(self._existing(name))

    def metric_columns(self, name: str) -> dict[str, MetricColumns]:
        """Capability: the job's series as float64 columns, cached in its folder
        and brought up to date incrementally (metric_columns.py)."""
        from . import metric_columns  # numpy, for readers that chart

        jobdir = self._existing(name)
        try:
            return metric_columns.load(jobdir)
        except OSError as exc:
            raise BackendError(f"cannot cache the metrics of {name} in {jobdir.path / metric_columns.FOLDER}: "
                               f"{exc.strerror or exc}") from exc

    def stop(self, name: str) -> None:
        jobdir = self._existing(name)
        if self.get(name).status.phase.finished:  # type: ignore[union-attr]
            return
        jobdir.request_stop()
        terminate_supervisor(jobdir.supervisor_pid())

    def delete(self, name: str) -> None:
        import shutil

        jobdir = self._existing(name)
        if not self.get(name).status.phase.finished:  # type: ignore[union-attr]
            raise BackendError(f"job {name!r} is still running; stop it first")
        shutil.rmtree(jobdir.path)
