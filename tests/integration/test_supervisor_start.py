"""How the local supervisor is started: forked from the submitter (no new
interpreter, see forkstart.py) where that is safe, a new interpreter where it
is not. The forked one must keep every guarantee of the exec'd one, so the
submitter here does its worst: it holds a pipe (its stdout, read by this test
to EOF), a listening socket and an open file, ignores SIGTERM and SIGCHLD,
and then dies, while the job goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trainforge
from trainforge.backends.local.backend import LocalBackend
from trainforge.backends.local.forkstart import MODE_VARIABLE, fork_refusal
from trainforge.backends.local.orphans import process_start_ticks
from trainforge.spec import Phase

from tests.infra.waiting import wait_until
from tests.integration.local_jobs import fresh_home

REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "tests" / "trainers" / "faults"

SUBMITTER = """
import signal, socket, sys
import trainforge
listening = socket.socket()
listening.bind(("127.0.0.1", 0))
listening.listen()
held = open(sys.argv[2], "w")
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a forked supervisor must not keep these
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
trainforge.submit_job(sys.argv[1], name="exits", hparams={"action": "exit", "code": "3"})
job = trainforge.submit_job(sys.argv[1], name="forked", hparams={"action": "sleep", "seconds": "120"})
print(job.name, listening.getsockname()[1], flush=True)
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from fresh_home(tmp_path, monkeypatch)


def open_files(pid: int) -> list[str]:
    folder = Path(f"/proc/{pid}/fd")
    return [os.readlink(folder / fd) for fd in os.listdir(folder)]


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_a_forked_supervisor_outlives_its_submitter_holding_none_of_its_files(
        home: Path, tmp_path: Path) -> None:
    held = tmp_path / "held-by-the-submitter"
    submitter = subprocess.Popen([sys.executable, "-c", SUBMITTER, str(FAULTS), str(held)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, MODE_VARIABLE: "fork"})
    # EOF on the submitter's stdout once it exits: the supervisor does not hold the pipe.
    out, _ = submitter.communicate(timeout=60)
    assert submitter.returncode == 0
    name, port = out.split()
    jobdir = LocalBackend("process").jobdir(name)
    pid = jobdir.supervisor_pid()
    assert pid is not None and jobdir.supervisor_start() == process_start_ticks(pid)
    assert b"trainforge.backends.local.supervisor" not in cmdline(pid)  # forked, not exec'd
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # its own session, as stop expects

    job = trainforge.get_job(name)  # another process sees it, follows it
    wait_until(lambda: any("sleeping" in line for line in job.logs()), timeout=60, what="the trainer to start")
    assert job.phase is Phase.TRAINING
    files = open_files(pid)
    assert str(held) not in files and not any(f.startswith("socket:") for f in files), files
    # The submitter's port is free again: nobody listens there.
    import socket

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(port))) != 0

    # With SIGCHLD still ignored, the supervisor would read every trainer's exit code as 0.
    failed = trainforge.get_job("exits").wait(timeout=60, raise_on_failure=False)
    assert (failed.phase, failed.failure_reason) == (Phase.FAILED, "trainer exited with code 3 and wrote no failure "
                                                     "file; last output line: about to exit without a failure file")

    job.stop()  # SIGTERM reaches it (the submitter ignored SIGTERM), and it reaps its trainer
    status = job.wait(timeout=60, raise_on_failure=False)
    assert (status.phase, status.failure_reason) == (Phase.STOPPED, "stopped on request")
    wait_until(lambda: process_start_ticks(pid) is None or _zombie(pid), timeout=30, what="the supervisor to exit")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_submitter_running_threads_starts_a_new_interpreter(home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        assert fork_refusal() == f"the submitter runs {threading.active_count()} threads"
        job = trainforge.submit_job(str(FAULTS), hparams={"action": "sleep", "seconds": "120"})
    finally:
        release.set()
        other.join()
    pid = LocalBackend("process").jobdir(job.name).supervisor_pid()
    assert pid is not None and b"trainforge.backends.local.supervisor" in cmdline(pid)
    wait_until(lambda: any("sleeping" in line for line in job.logs()), timeout=60, what="the trainer to start")
    job.stop()
    assert job.wait(timeout=60, raise_on_failure=False).phase is Phase.STOPPED
    assert fork_refusal({MODE_VARIABLE: "exec"}) == f"{MODE_VARIABLE}=exec"
    assert fork_refusal({MODE_VARIABLE: "fork"}) is None
