"""Tuning jobs on this machine: a detached tuning supervisor per tuning job
drives the local backend (process or container), with its state on disk so
any shell can list, follow and stop it, as for local jobs.

    <home>/tuning/<name>/
        tuning.json        the validated TuningJob (+ backend kind and options)
        status.json        TuningJobStatus, replaced atomically (counts, best trial)
        supervisor.pid     pid of the tuning supervisor
        stop               exists once a stop was requested
        early-stops.jsonl  trials the tuning job stopped, and why (one line each)
        supervisor.log     the supervisor's own output

Trials are ordinary local jobs (``<name>-NNN``) labelled with the tuning job
and their number: ``trainforge list`` shows them, ``trainforge logs`` reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._time import utc_now
from ...config import Settings, load_settings
from ...errors import BackendError, JobNotFound
from ...spec import TrainingJob
from ...spec.tuning import TuningJob, TuningJobStatus
from ...tuning.records import TrialRecord
from ...tuning.trials import trial_job, trial_number, trial_record
from .backend import LocalBackend, _alive, terminate_supervisor
from .jobdir import write_atomically


@dataclass(frozen=True)
class TuningDir:
    path: Path

    @property
    def tuning_file(self) -> Path: return self.path / "tuning.json"
    @property
    def status_file(self) -> Path: return self.path / "status.json"
    @property
    def pid_file(self) -> Path: return self.path / "supervisor.pid"
    @property
    def stop_file(self) -> Path: return self.path / "stop"
    @property
    def early_stops_file(self) -> Path: return self.path / "early-stops.jsonl"
    @property
    def supervisor_log(self) -> Path: return self.path / "supervisor.log"

    def read_document(self) -> dict[str, Any]:
        return dict(json.loads(self.tuning_file.read_text(encoding="utf-8")))

    def read_tuning(self) -> TuningJob:
        tuning = TuningJob.model_validate(self.read_document()["tuning"])
        tuning.status = self.read_status()
        return tuning

    def read_status(self) -> TuningJobStatus:
        try:
            return TuningJobStatus.model_validate_json(self.status_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return TuningJobStatus(message="submitted")

    def write_status(self, status: TuningJobStatus) -> None:
        write_atomically(self.status_file, status.model_dump_json(by_alias=True, indent=2))

    def supervisor_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def early_stops(self) -> dict[int, str]:
        """Trial number -> why the tuning job stopped it."""
        out: dict[int, str] = {}
        try:
            lines = self.early_stops_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                entry = json.loads(line)
                out[int(entry["trial"])] = str(entry["reason"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        return out

    def record_early_stop(self, number: int, reason: str) -> None:
        with open(self.early_stops_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"trial": number, "reason": reason, "time": utc_now()}) + "\n")


def _spawn_supervisor(tdir: TuningDir) -> None:
    """Detached (its own session), so it outlives the submitting shell."""
    with open(tdir.supervisor_log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainforge.backends.local.tuning_supervisor", str(tdir.path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH", "")) if p)},
        )
    tdir.pid_file.write_text(str(process.pid))


class LocalTuning:
    """Tuning jobs of one local backend kind (``process`` or ``container``)."""

    def __init__(self, kind: str = "process", settings: Settings | None = None, **options: str):
        self.settings = settings or load_settings()
        self.jobs = LocalBackend(kind, self.settings, **options)
        self.name = kind

    @property
    def root(self) -> Path:
        return self.settings.home / "tuning"

    def dir(self, name: str) -> TuningDir:
        return TuningDir(self.root / name)

    def _existing(self, name: str) -> TuningDir:
        tdir = self.dir(name)
        if not tdir.tuning_file.exists():
            raise JobNotFound(f"no local tuning job named {name!r} (in {self.root})")
        return tdir

    def submit(self, tuning: TuningJob) -> None:
        """Check the template as trial 0 would run, then start the supervisor."""
        self.jobs.validate(trial_job(tuning, 0, {}))
        for parent in tuning.spec.warm_start.parents if tuning.spec.warm_start else []:
            self._existing(parent)
        tdir = self.dir(tuning.name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tdir.path.mkdir()
        except FileExistsError:
            raise BackendError(f"a local tuning job named {tuning.name!r} already exists ({tdir.path}); "
                               "choose another name or use metadata.generateName") from None
        document = {"tuning": tuning.model_copy(update={"status": None}).to_dict(),
                    "backend": {"kind": self.jobs.name, "options": self.jobs.options}}
        write_atomically(tdir.tuning_file, json.dumps(document, indent=2))
        tdir.write_status(TuningJobStatus(message="submitted"))
        _spawn_supervisor(tdir)

    def get(self, name: str) -> TuningJob:
        tdir = self._existing(name)
        tuning = tdir.read_tuning()
        status = tuning.status
        assert status is not None
        if status.end_time is None and tdir.pid_file.exists() and not _alive(tdir.supervisor_pid()):
            status = tdir.read_status()  # it may have written its last status as it exited
            if status.end_time is None:
                status.phase = "Failed"
                status.failure_reason = status.message = (
                    f"the tuning supervisor process died (see {tdir.supervisor_log}); "
                    f"`trainforge tuning resume {name}` continues it")
        tuning.status = status
        return tuning

    def list(self) -> list[TuningJob]:
        if not self.root.is_dir():
            return []
        found = [self.get(p.name) for p in self.root.iterdir() if (p / "tuning.json").exists()]
        return sorted(found, key=lambda t: (t.status.start_time or "", t.name) if t.status else ("", t.name))

    def stop(self, name: str) -> None:
        """Stop the tuning job and, through its supervisor, its running trials."""
        tdir = self._existing(name)
        if self.get(name).status.end_time is not None:  # type: ignore[union-attr]
            return
        write_atomically(tdir.stop_file, utc_now())
        terminate_supervisor(tdir.supervisor_pid())

    def resume(self, name: str) -> None:
        """Start a new supervisor for a tuning job whose supervisor died: it
        rebuilds everything from the trials on disk."""
        tdir = self._existing(name)
        if _alive(tdir.supervisor_pid()):
            raise BackendError(f"tuning job {name!r} still has a live supervisor (pid {tdir.supervisor_pid()})")
        if tdir.read_status().end_time is not None:
            raise BackendError(f"tuning job {name!r} has finished")
        _spawn_supervisor(tdir)

    # -- trials -------------------------------------------------------------------
    def trial_jobs(self, name: str) -> dict[int, TrainingJob]:
        """Trial number -> its job (with status), read from the local jobs."""
        jobs_root = self.settings.jobs_root
        found: dict[int, TrainingJob] = {}
        if not jobs_root.is_dir():
            return found
        prefix = f"{name}-"
        for path in jobs_root.iterdir():
            if not path.name.startswith(prefix) or not (path / "job.json").exists():
                continue
            job = self.jobs.get(path.name)
            number = trial_number(job, name)
            if number is not None:
                found[number] = job
        return found

    def early_stops(self, name: str) -> dict[int, str]:
        """Trial number -> why an early-stopping rule stopped it."""
        return self._existing(name).early_stops()

    def records(self, name: str, tuning: TuningJob | None = None) -> list[TrialRecord]:
        tdir = self._existing(name)
        tuning = tuning or tdir.read_tuning()
        stops = tdir.early_stops()
        return [trial_record(tuning.spec, number, job, self.jobs.metrics(job.name), number in stops)
                for number, job in sorted(self.trial_jobs(name).items())]
