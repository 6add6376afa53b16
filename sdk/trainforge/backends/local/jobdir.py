"""On-disk state of one local job, shared by the supervisor (the only writer
of status) and every reader (SDK, CLI, other processes).

    <jobs_root>/<name>/
        job.json            the validated TrainingJob (+ backend settings)
        status.json         TrainingJobStatus, replaced atomically
        supervisor.pid      pid of the supervising process and its start time in clock
                            ticks (``PID TICKS``; written by the submitter)
        supervisor.started  written by the supervisor once it owns the job (start-up handshake)
        .reserve            space held back so the final status fits on a full disk
        tmp/                the supervisor's scratch (packed archives); swept when it ends or dies
        stop                exists once a stop was requested
        trainer.json        what runs for the current attempt (orphans.py), while it runs
        logs/attempt-N.log  trainer output per attempt (stdout and stderr)
        logs/algo-K/attempt-N.log   the same for host K > 1 of a multi-host job
        metrics.jsonl       metric records scraped from the logs by regex
        metric-columns/     both metric files as float64 columns, for charts (metric_columns.py)
        run/                the contract root (/opt/ml) of the current attempt
        run-algo-K/         the contract root of host K > 1 of a multi-host job
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._time import utc_now
from ...contract import Layout
from ...errors import BackendError, JobExists, SpecError
from ...spec import TrainingJob, TrainingJobStatus, parse_job

FIRST_HOST = "algo-1"
RESERVE_BYTES = 256 * 1024  # a few status.json writes, on a disk that filled up meanwhile
FULL_DISK_BYTES = 1024 * 1024  # below this much free space a reader calls the disk full


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class JobDir:
    path: Path

    @property
    def name(self) -> str: return self.path.name
    @property
    def job_file(self) -> Path: return self.path / "job.json"
    @property
    def status_file(self) -> Path: return self.path / "status.json"
    @property
    def pid_file(self) -> Path: return self.path / "supervisor.pid"
    @property
    def stop_file(self) -> Path: return self.path / "stop"
    @property
    def trainer_file(self) -> Path: return self.path / "trainer.json"
    @property
    def logs_dir(self) -> Path: return self.path / "logs"
    @property
    def metrics_file(self) -> Path: return self.path / "metrics.jsonl"
    @property
    def run_dir(self) -> Path: return self.path / "run"
    @property
    def supervisor_log(self) -> Path: return self.path / "supervisor.log"
    @property
    def layout(self) -> Layout: return Layout(str(self.run_dir))
    @property
    def started_file(self) -> Path: return self.path / "supervisor.started"
    @property
    def reserve_file(self) -> Path: return self.path / ".reserve"
    @property
    def scratch_dir(self) -> Path: return self.path / "tmp"

    # The first host keeps the single-host paths, so every reader of a job
    # (logs, metrics, the model) reads algo-1's, the host that ships the model.
    def host_run_dir(self, host: str = FIRST_HOST) -> Path:
        return self.run_dir if host == FIRST_HOST else self.path / f"run-{host}"

    def host_layout(self, host: str = FIRST_HOST) -> Layout:
        return Layout(str(self.host_run_dir(host)))

    def host_logs_dir(self, host: str = FIRST_HOST) -> Path:
        return self.logs_dir if host == FIRST_HOST else self.logs_dir / host

    def log_file(self, attempt: int, host: str = FIRST_HOST) -> Path:
        return self.host_logs_dir(host) / f"attempt-{attempt}.log"

    def log_files(self, host: str = FIRST_HOST) -> list[Path]:
        folder = self.host_logs_dir(host)
        files = folder.glob("attempt-*.log") if folder.is_dir() else []
        return sorted(files, key=lambda p: int(p.stem.split("-")[1]))

    def create(self, job: TrainingJob, settings: dict[str, Any]) -> None:
        """Create the folder for a new job; JobExists if the name is taken."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except FileExistsError:
            raise self.exists_error() from None
        except OSError as exc:
            raise BackendError(f"cannot create the job folder {self.path}: {exc}") from exc
        self.logs_dir.mkdir()
        document = {"job": job.to_dict(), "backend": settings}
        write_atomically(self.job_file, json.dumps(document, indent=2))
        self.write_status(TrainingJobStatus(message="submitted"))
        with contextlib.suppress(OSError), open(self.reserve_file, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)  # real blocks, not a sparse file

    def exists_error(self) -> JobExists:
        return JobExists(f"a local job named {self.name!r} already exists ({self.path}); "
                         "choose another name or use metadata.generateName")

    def read_document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.job_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the local job file {self.job_file}: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("job"), dict):
            raise BackendError(f"the local job file {self.job_file} holds no job")
        return document

    def read_job(self) -> TrainingJob:
        document = self.read_document()
        try:
            job = parse_job(document["job"], source=str(self.job_file))
        except SpecError as exc:  # not the user's input: a damaged record of it
            raise BackendError(f"the local job file {self.job_file} is damaged: {exc.issues[0]}") from exc
        job.status = self.read_status()
        return job

    def read_status(self) -> TrainingJobStatus:
        try:
            return TrainingJobStatus.model_validate_json(self.status_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return TrainingJobStatus(message="submitted")
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise BackendError(f"cannot read the local job status {self.status_file}: "
                               f"{str(exc).splitlines()[0]}") from exc

    def write_status(self, status: TrainingJobStatus) -> None:
        """Replace status.json; on a full disk, give up the reserve once and
        retry, so the final status of a job that filled the disk still lands."""
        text = status.model_dump_json(by_alias=True, indent=2)
        try:
            write_atomically(self.status_file, text)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self.release_reserve():
                raise
            write_atomically(self.status_file, text)
        if status.phase.finished:
            self.release_reserve()

    def release_reserve(self) -> bool:
        try:
            self.reserve_file.unlink()
            return True
        except OSError:
            return False

    def full_disk_note(self) -> str:
        """'' or why writing here may have failed: the folder's disk is full."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return ""
        free = st.f_bavail * st.f_frsize
        return f"{self.path} is on a full disk ({free} bytes free)" if free < FULL_DISK_BYTES else ""

    def supervisor_log_tail(self, limit: int = 500) -> str:
        """The last non-empty line of supervisor.log (its stderr), cut to ``limit``."""
        try:
            with open(self.supervisor_log, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 8192))
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return last[:limit]

    def mark_started(self) -> None:
        write_atomically(self.started_file, str(os.getpid()))

    @property
    def started(self) -> bool:
        return self.started_file.exists()

    def clear_scratch(self) -> None:
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def supervisor_pid(self) -> int | None:
        return self._pid_record()[0]

    def supervisor_start(self) -> int | None:
        """When the recorded supervisor started (clock ticks since boot), if recorded:
        tells it from a process that reused its pid."""
        return self._pid_record()[1]

    def record_supervisor(self, pid: int, start: int | None) -> None:
        self.pid_file.write_text(f"{pid} {start}" if start is not None else str(pid))

    def _pid_record(self) -> tuple[int | None, int | None]:
        try:
            fields = self.pid_file.read_text().split()
            return int(fields[0]), int(fields[1]) if len(fields) > 1 else None
        except (FileNotFoundError, ValueError, IndexError):
            return None, None

    def record_trainer(self, record: dict[str, Any]) -> None:
        """What is running for the current attempt (see orphans.py)."""
        write_atomically(self.trainer_file, json.dumps(record))

    def read_trainer(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.trainer_file.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError):
            return None

    def clear_trainer(self) -> None:
        self.trainer_file.unlink(missing_ok=True)

    def request_stop(self) -> None:
        write_atomically(self.stop_file, utc_now())

    @property
    def stop_requested(self) -> bool:
        return self.stop_file.exists()
