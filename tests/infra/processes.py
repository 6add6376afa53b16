"""Running a server binary in the background with its output in a log file."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .binaries import log_tail

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A pytest killed with SIGKILL gets no teardown; without this its servers
    # would keep ports and data dirs forever. Linux only, like the test bed.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """One server process; stdout and stderr go to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            # Own session: Ctrl-C reaches pytest only, which then stops the
            # servers in order (apiserver before etcd) instead of all at once.
            self._proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def failure(self) -> str | None:
        """Why the process is not running when it should be, else None."""
        if self._proc is None:
            return f"{self.name} was never started"
        code = self._proc.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; {self.log_path}:\n{self.tail()}"

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 15) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
