"""The local supervisor under faults that used to hang a job or leave things
behind, each provoked for real on the process backend: a full TRAINFORGE_HOME
(a 4 MiB tmpfs), a supervisor that cannot start, a stop during a long
stage-in, a 60 MiB line without a newline, a supervisor killed mid stage-out.

Each must end promptly (bounded waits, never a timing assertion), with an
honest status, and with nothing left in the system temp dir or the store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trainforge
from trainforge.backends.local import backend as local_backend
from trainforge.backends.local.backend import LocalBackend
from trainforge.backends.local.forkstart import MODE_VARIABLE
from trainforge.backends.local.jobdir import JobDir
from trainforge.backends.local.orphans import process_start_ticks
from trainforge.errors import BackendError
from trainforge.spec import Phase, parse_job
from trainforge.storage.files import is_temp_name

from tests.infra.waiting import wait_until
from tests.integration.local_jobs import stop_leftovers

REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "tests" / "trainers" / "faults"
MiB = 1024 * 1024


def faults(action: str, **hparams: Any) -> dict[str, Any]:
    return {"action": action, **hparams}


def _clean_env(monkeypatch: pytest.MonkeyPatch, home: Path, tmp: Path) -> None:
    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(home))
    tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(tmp))  # the supervisor's system temp dir: must stay empty


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "home"
    _clean_env(monkeypatch, folder, tmp_path / "systmp")
    yield folder
    stop_leftovers()


@pytest.fixture
def full_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TRAINFORGE_HOME on a 4 MiB tmpfs: it fills up for real (ENOSPC)."""
    folder = tmp_path / "small-home"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk here: {mounted.stderr.strip()}")
    try:
        _clean_env(monkeypatch, folder, tmp_path / "systmp")
        yield folder
        stop_leftovers()
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def jobdir_of(job: trainforge.Job) -> JobDir:
    return LocalBackend("process").jobdir(job.name)


def alive(pid: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, TypeError):
        return False
    return state != "Z"


def temp_leftovers(*roots: Path) -> list[str]:
    return [str(p) for root in roots if root.exists() for p in root.rglob("*")
            if is_temp_name(p.name) or p.name.startswith(("trainforge-pack-", "trainforge-model-"))]


# --- 1. a full TRAINFORGE_HOME ---------------------------------------------------

def test_full_home_ends_the_flooding_trainer_and_fails_naming_disk_and_path(full_home: Path) -> None:
    job = trainforge.submit({
        "metadata": {"name": "flood"},
        "spec": {"image": str(FAULTS), "hyperparameters": faults("flood"),
                 "stopping": {"gracePeriodSeconds": 2}},
    })
    jobdir = jobdir_of(job)
    # Without the fix the log reader died on ENOSPC and the trainer blocked on a full pipe
    # until maxRuntimeSeconds (a day by default): this wait is the "promptly".
    status = job.wait(timeout=90, raise_on_failure=False)

    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None
    assert status.failure_reason.startswith(
        f"cannot write the trainer's output to {jobdir.log_file(1)}: No space left on device; the trainer was ended")
    # The supervisor wrote that itself (the reserve made room), and then exited.
    on_disk = jobdir.read_status()
    assert on_disk.phase is Phase.FAILED and on_disk.failure_reason == status.failure_reason
    wait_until(lambda: not alive(jobdir.supervisor_pid()), timeout=30, what="the supervisor to exit")
    assert jobdir.read_trainer() is None  # its trainer ended, not orphaned


def test_supervisor_dying_on_a_full_disk_is_reported_with_the_disk(full_home: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("sleep", seconds=120))
    jobdir = jobdir_of(job)
    wait_until(lambda: "sleeping" in "\n".join(job.logs()), timeout=60, what="the trainer to start")
    with open(full_home / "filler", "wb") as filler:  # fill the disk to the last block
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    pid = jobdir.supervisor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # as if it had died writing status.json

    status = wait_until(lambda: job.status() if job.phase.finished else None, timeout=30,
                        what="the dead supervisor to be noticed")
    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None
    assert status.failure_reason.startswith(f"the local supervisor process died (see {jobdir.supervisor_log}); "
                                            f"{jobdir.path} is on a full disk (")


# --- 2. a supervisor that cannot start ----------------------------------------------

def _broken_package(root: Path, body: str) -> Path:
    """A ``pydantic`` that shadows the real one for the supervisor's interpreter."""
    package = root / "shadow" / "pydantic"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return package.parent


def test_supervisor_that_cannot_import_fails_the_submit_and_the_job(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_VARIABLE, "exec")  # these faults are the exec'd supervisor's start-up
    shadow = _broken_package(tmp_path, "raise ImportError('trainforge test: pydantic is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    with pytest.raises(BackendError) as info:
        trainforge.submit_job(str(FAULTS), name="cannot-import", hparams=faults("ok"))
    jobdir = LocalBackend("process").jobdir("cannot-import")
    reason = ("the local supervisor exited with code 1 before it started the job: "
              f"ImportError: trainforge test: pydantic is broken here (see {jobdir.supervisor_log})")
    assert str(info.value) == f"job 'cannot-import' failed to start: {reason}"
    status = trainforge.get_job("cannot-import").status()  # any reader: Failed, not Pending
    assert (status.phase, status.failure_reason) == (Phase.FAILED, reason)


def test_supervisor_without_an_interpreter_fails_the_submit_and_the_job(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_VARIABLE, "exec")  # these faults are the exec'd supervisor's start-up
    missing = tmp_path / "no-such-python"
    monkeypatch.setattr(sys, "executable", str(missing))
    with pytest.raises(BackendError, match="could not be started"):
        trainforge.submit_job(str(FAULTS), name="no-python", hparams=faults("ok"))
    status = trainforge.get_job("no-python").status()
    assert status.phase is Phase.FAILED
    assert status.failure_reason == f"the local supervisor could not be started (No such file or directory: {missing})"


def test_supervisor_hanging_before_it_starts_is_killed_and_the_job_failed(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_VARIABLE, "exec")  # these faults are the exec'd supervisor's start-up
    shadow = _broken_package(tmp_path, "import time\ntime.sleep(600)\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    monkeypatch.setattr(local_backend, "SUPERVISOR_START_SECONDS", 3.0)
    with pytest.raises(BackendError, match="did not start within 3 s and was killed"):
        trainforge.submit_job(str(FAULTS), name="hangs", hparams=faults("ok"))
    jobdir = LocalBackend("process").jobdir("hangs")
    assert not alive(jobdir.supervisor_pid())
    assert trainforge.get_job("hangs").status().phase is Phase.FAILED


def test_a_job_whose_submitter_died_before_the_supervisor_started_is_failed(home: Path) -> None:
    backend = LocalBackend("process")
    for name in ("orphaned", "just-submitted"):  # folders as a submitter killed midway leaves them
        job = parse_job({"metadata": {"name": name}, "spec": {"image": str(FAULTS)}})
        backend.jobdir(name).create(job, {"kind": "process", "options": {}, "output": backend.default_output()})
    old = backend.jobdir("orphaned").job_file
    long_ago = old.stat().st_mtime - local_backend.SUPERVISOR_START_SECONDS - 60
    os.utime(old, (long_ago, long_ago))

    status = backend.get("orphaned").status
    assert status is not None and status.phase is Phase.FAILED
    assert status.failure_reason == ("the local supervisor never started "
                                     "(no supervisor.pid; was the submitting process killed?)")
    assert backend.get("just-submitted").status.phase is Phase.PENDING  # type: ignore[union-attr]
    shutil.rmtree(backend.jobdir("just-submitted").path)  # no supervisor will ever end it


def test_a_hung_supervisor_whose_submitter_died_is_killed_by_a_reader(home: Path, tmp_path: Path) -> None:
    backend = LocalBackend("process")
    job = parse_job({"metadata": {"name": "hung"}, "spec": {"image": str(FAULTS)}})
    jobdir = backend.jobdir("hung")
    jobdir.create(job, {"kind": "process", "options": {}, "output": backend.default_output()})
    shadow = _broken_package(tmp_path, "import time\ntime.sleep(600)\n")
    package_root = Path(local_backend.__file__).resolve().parents[3]
    hung = subprocess.Popen([sys.executable, "-m", "trainforge.backends.local.supervisor", str(jobdir.path)],
                            env={**os.environ, "PYTHONPATH": f"{package_root}{os.pathsep}{shadow}"},
                            start_new_session=True)
    # As the submitter did before it was killed (pid and start time: no race with the exec).
    jobdir.record_supervisor(hung.pid, process_start_ticks(hung.pid))
    try:
        assert backend.get("hung").status.phase is Phase.PENDING  # type: ignore[union-attr]  (young)
        long_ago = jobdir.job_file.stat().st_mtime - local_backend.SUPERVISOR_START_SECONDS - 60
        os.utime(jobdir.job_file, (long_ago, long_ago))

        status = backend.get("hung").status
        assert status is not None and status.phase is Phase.FAILED
        assert status.failure_reason == (f"the local supervisor did not start within "
                                         f"{local_backend.SUPERVISOR_START_SECONDS:g} s and was killed "
                                         f"(see {jobdir.supervisor_log})")
        assert hung.wait(timeout=30) == -signal.SIGKILL
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()


# --- 3. stop during stage-in ---------------------------------------------------------

def test_stop_during_stage_in_cancels_the_download(home: Path) -> None:
    # 8 GiB of input in the embedded store, sparse: free to make, long to copy.
    data = home / "store" / "big-inputs" / "train"
    data.mkdir(parents=True)
    total = 0
    for index in range(4):
        with open(data / f"part-{index}.bin", "wb") as fh:
            fh.truncate(2048 * MiB)
        total += 2048 * MiB
    job = trainforge.submit_job(str(FAULTS), data="local://big-inputs/train/", hparams=faults("ok"))
    jobdir = jobdir_of(job)
    channel = Path(jobdir.layout.channel_dir("train"))

    def copying() -> bool:  # into a hidden sibling of the channel's folder, renamed into place at the end
        return any(p.is_file() and p.stat().st_size > 0 for p in Path(jobdir.layout.data_dir).rglob("*"))

    wait_until(copying, timeout=60, interval=0.02, what="the download to be under way")
    assert not channel.exists()  # no trainer could see part of it
    job.stop()
    status = job.wait(timeout=60, raise_on_failure=False)

    assert (status.phase, status.message, status.failure_reason) == (
        Phase.STOPPED, "stopped during stage-in", "stopped on request")
    assert [c.type for c in status.conditions] == ["Created", "Scheduled", "Stopped"]
    assert not Path(jobdir.layout.data_dir).exists()  # the partial download is gone
    assert temp_leftovers(home / "store") == []
    assert sum(p.stat().st_size for p in data.iterdir()) == total  # the source is untouched


# --- 4. a 60 MiB line without a newline ---------------------------------------------------

def _peak_rss_after(hparams: dict[str, Any]) -> tuple[int, trainforge.Job]:
    """The supervisor's peak RSS (VmHWM, bytes) once the trainer printed its
    long line; the trainer then sleeps, so the supervisor is still there to ask."""
    job = trainforge.submit_job(str(FAULTS), hparams=hparams)
    wait_until(lambda: "after the long line" in "\n".join(job.logs()), timeout=120,
               what="the trainer's line after the long one")
    pid = jobdir_of(job).supervisor_pid()
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    peak = int(fields["VmHWM"].split()[0]) * 1024
    job.stop()
    job.wait(timeout=60, raise_on_failure=False)
    return peak, job


def test_a_60_mib_line_without_a_newline_costs_the_supervisor_about_one_mib(home: Path) -> None:
    baseline, _ = _peak_rss_after(faults("longline", mib=0, seconds=120))
    peak, job = _peak_rss_after(faults("longline", mib=60, seconds=120))
    # The old reader held the whole line several times over (about 300 MiB for 60).
    assert peak - baseline < 100 * MiB, f"supervisor peak RSS grew by {(peak - baseline) // MiB} MiB"
    log = jobdir_of(job).log_file(1)
    assert log.stat().st_size < 2 * MiB
    lines = log.read_text().splitlines()
    cut = next(line for line in lines if line.startswith("LLLL"))
    assert cut == "L" * MiB + f" [trainforge: line longer than {MiB} bytes; the rest of it was dropped]"
    assert "after the long line" in lines


# --- 5. a supervisor killed mid stage-out ----------------------------------------------------

@pytest.mark.parametrize("moment", ["packing", "uploading"])
def test_supervisor_killed_mid_stage_out_leaves_no_temp_files_nor_partial_model(
        home: Path, tmp_path: Path, moment: str) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("bigmodel", mib=256))
    jobdir = jobdir_of(job)
    artifacts = home / "store" / "trainforge-artifacts" / "default" / job.name

    def caught() -> bool:
        if moment == "packing":
            return any(p.is_file() and p.stat().st_size > 0 for p in jobdir.scratch_dir.rglob("*"))
        return any(is_temp_name(p.name) and p.name.startswith(".model.tar.gz") for p in artifacts.rglob("*"))

    wait_until(caught, timeout=180, interval=0.01, what=f"the supervisor to be {moment} the model")
    pid = jobdir.supervisor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    status = wait_until(lambda: job.status() if job.phase.finished else None, timeout=30,
                        what="the dead supervisor to be noticed")
    assert status.phase is Phase.FAILED
    assert status.failure_reason == f"the local supervisor process died (see {jobdir.supervisor_log})"
    # Nothing left behind: not in the system temp dir, the job's scratch, or the store.
    assert list((tmp_path / "systmp").iterdir()) == []
    assert not jobdir.scratch_dir.exists()
    assert temp_leftovers(home / "store", jobdir.path) == []
    assert not (artifacts / "output" / "model.tar.gz").exists()
    assert job.model_uri is None


@pytest.mark.minio
def test_unfinished_multipart_uploads_under_a_prefix_are_aborted(minio_bucket: Any, tmp_path: Path) -> None:
    """What a killed multipart upload leaves on S3 (parts, no object) is swept
    under the job's prefix only."""
    from trainforge.storage import open_store

    from tests.integration.test_storage_s3 import settings_for

    s3 = minio_bucket.s3_client()
    for key in ("out/job-a/output/model.tar.gz", "out/job-b/output/model.tar.gz"):
        upload = s3.create_multipart_upload(Bucket=minio_bucket.name, Key=key)
        s3.upload_part(Bucket=minio_bucket.name, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                       Body=b"x" * MiB)
    store = open_store(minio_bucket.uri(), settings_for(minio_bucket, tmp_path / "home"))

    swept = store.sweep_partial(minio_bucket.uri("out/job-a/"),  # type: ignore[attr-defined]
                                [minio_bucket.uri("out/job-a/output/model.tar.gz")])
    assert swept == 1
    left = s3.list_multipart_uploads(Bucket=minio_bucket.name).get("Uploads", [])
    assert [u["Key"] for u in left] == ["out/job-b/output/model.tar.gz"]  # another job's is not ours
    assert store.list(minio_bucket.uri("out/")) == []  # never an object either way
    s3.abort_multipart_upload(Bucket=minio_bucket.name, Key=left[0]["Key"], UploadId=left[0]["UploadId"])


@pytest.mark.slow
def test_a_container_log_stream_is_split_in_bounded_lines(container_engine: Any, docker_client: Any) -> None:
    """The container launcher's reader of the engine's log stream: a 60 MiB
    line without a newline is cut at 1 MiB, and the reader holds about that
    much, not the line (measured with tracemalloc in this process)."""
    import tracemalloc

    from trainforge.backends.local.container import _Container

    # It sleeps afterwards: Podman's followed log stream drops what it has not sent when
    # the container exits. The test ends it once the line after the long one arrived.
    script = ("import sys, time; sys.stdout.write('L' * (60 << 20)); "
              "sys.stdout.write('\\nafter the long line\\n'); sys.stdout.flush(); time.sleep(600)")
    container = docker_client.containers.run(container_engine.base_image, ["python3", "-c", script], detach=True)
    launched = _Container(container, [], container_engine.docker_host)
    seen = []
    try:
        tracemalloc.start()
        for line in launched.lines():
            seen.append((line[:4], len(line)))
            if line == "after the long line":
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                launched.kill()
        launched.wait(timeout=60)
    finally:
        launched.cleanup()
    mark = f" [trainforge: line longer than {MiB} bytes; the rest of it was dropped]"
    assert seen == [("LLLL", MiB + len(mark)), ("afte", len("after the long line"))]
    assert peak < 16 * MiB, f"the reader held {peak // MiB} MiB"


@pytest.mark.minio
@pytest.mark.parametrize("size", [3 * MiB, 20 * MiB])  # one request; s3transfer parts
def test_a_cancelled_s3_download_stops_and_leaves_no_partial_file(minio_bucket: Any, tmp_path: Path,
                                                                   size: int) -> None:
    from trainforge.errors import TransferCancelled
    from trainforge.storage import open_store
    from trainforge.storage.progress import CancellableProgress

    from tests.integration.test_storage_s3 import settings_for

    s3 = minio_bucket.s3_client()
    for index in range(3):
        s3.put_object(Bucket=minio_bucket.name, Key=f"data/part-{index}.bin", Body=b"x" * size)
    store = open_store(minio_bucket.uri(), settings_for(minio_bucket, tmp_path / "home", max_concurrency=1))
    checks: list[int] = []

    def cancelled() -> bool:
        checks.append(1)
        return len(checks) > 2  # a stop arrives while the first object is coming in

    with pytest.raises(TransferCancelled, match="stopped during stage-in"):
        store.download_prefix(minio_bucket.uri("data/"), str(tmp_path / "dst"),
                              progress=CancellableProgress(cancelled, "stopped during stage-in"))
    dst = tmp_path / "dst"
    assert ([p for p in dst.rglob("*") if p.is_file()] if dst.exists() else []) == []
