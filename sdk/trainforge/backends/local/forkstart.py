"""Starting a job's detached supervisor by forking the submitter.

A supervisor started as a new interpreter (``python -m
trainforge.backends.local.supervisor``) spends ~0.4 s importing pydantic, the
spec models and the settings before it can start the trainer: most of the time
from submit to the trainer's first line. The submitting process has all of
that imported already, so where it is safe the supervisor is forked from it
instead, and keeps every guarantee of the exec'd one:

- detached: a double fork, the supervisor leads its own session (pid ==
  process group id, as the readers and ``stop`` expect) and is nobody's child,
  so it outlives the submitting shell and is never left a zombie of it;
- none of the submitter's open files: every inherited descriptor above 2 is
  pointed at /dev/null (a pipe the submitter writes into still sees EOF when
  the submitter exits; a listening socket is released). Pointed, not closed:
  an object the child inherited that still names such a number then reaches
  /dev/null, never a file the supervisor opened later under the same number;
- none of its state that would be shared: cached S3 clients (their pooled
  connections) are dropped, the inherited heap is frozen for the cyclic GC
  (no finaliser of the submitter's garbage runs in the supervisor), signal
  handlers and the signal mask are Python's defaults again;
- it never returns into the submitter's code: it ends with ``os._exit``.

It is not safe, and the exec'd supervisor is used, when the submitter runs
other threads (a fork copies one thread; a lock another thread held stays
held), when it is large (the supervisor would pin its memory for the job's
whole run), or when ``TRAINFORGE_SUPERVISOR_START=exec``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

MODE_VARIABLE = "TRAINFORGE_SUPERVISOR_START"  # auto (the default), fork or exec
MAX_FORK_RSS_BYTES = 512 * 1024 * 1024


def resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def fork_refusal(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Why the supervisor must be exec'd rather than forked here, or None."""
    mode = environ.get(MODE_VARIABLE, "auto") or "auto"
    if mode == "exec":
        return f"{MODE_VARIABLE}=exec"
    if not hasattr(os, "fork"):
        return "no fork on this platform"
    if mode == "fork":
        return None
    if threading.active_count() > 1:
        return f"the submitter runs {threading.active_count()} threads"
    rss = resident_bytes()
    if rss is None or rss > MAX_FORK_RSS_BYTES:
        return "the submitter is large" if rss else "the submitter's size is unknown"
    return None


def fork_supervisor(jobdir: Path, log: Path) -> int:
    """Start the supervisor of ``jobdir`` (output to ``log``) as a detached
    grandchild; its pid. OSError if it could not be started."""
    from . import supervisor  # noqa: F401  (imported once here, not again in every forked child)

    for stream in (sys.stdout, sys.stderr):  # else the child would write the submitter's pending output too
        with contextlib.suppress(Exception):
            stream.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the intermediate: forks the supervisor, reports its pid, exits
        try:
            os.close(read_end)
            grandchild = os.fork()
            if grandchild == 0:
                _become_supervisor(jobdir, log, write_end)
            os.write(write_end, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        reply = b""
        while chunk := os.read(read_end, 64):
            reply += chunk
    finally:
        os.close(read_end)
        with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored by the submitter: reaped already
            os.waitpid(child, 0)
    if not reply:
        raise OSError("the forked supervisor process could not be created")
    return int(reply)


def _become_supervisor(jobdir: Path, log: Path, pipe: int) -> None:
    """The supervisor's life in the forked grandchild; never returns."""
    code = 1
    try:
        os.close(pipe)  # the submitter reads until every writer is gone
        os.setsid()
        _take_files(log)
        _reset_signals()
        _forget_shared_state()
        from .supervisor import main

        code = main(["supervisor", str(jobdir)])
    except BaseException:  # noqa: BLE001  (into supervisor.log, then out: never back into the submitter)
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _take_files(log: Path) -> None:
    """stdin from /dev/null, stdout and stderr to the log, everything else
    inherited pointed at /dev/null."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != null:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                os.fstat(fd)
                os.dup2(null, fd, inheritable=False)
    os.close(null)
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                                       buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                                       buffering=1, closefd=False)


def _reset_signals() -> None:
    """The handlers and mask a new interpreter starts with."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError, RuntimeError, TypeError):
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # an event loop's, in the submitter: its descriptor is /dev/null here


def _forget_shared_state() -> None:
    s3client = sys.modules.get("trainforge.storage.s3client")
    if s3client is not None:
        s3client.forget_clients()
    gc.freeze()  # after the caches are dropped: their cycles are frozen too, never finalised here
