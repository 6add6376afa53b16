"""The trainers of one attempt's hosts (algo-1..algo-N) as one trainer: it
runs while any host runs, and fails fast: when one host fails, the others are
sent SIGTERM (and SIGKILL after the grace period), because a distributed job
whose peer is gone would otherwise hang in its next collective."""

from __future__ import annotations

import socket
import time
from typing import Any

from .launchers import Launched


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now: the rendezvous port (MASTER_PORT) of
    one attempt. Rank 0 binds it a moment later; a port taken in between
    fails the attempt, which is retried with a new one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class HostGroup:
    """``members[i]`` is host algo-(i+1)'s trainer."""

    def __init__(self, members: list[Launched], grace_seconds: float):
        self.members = members
        self.grace_seconds = grace_seconds
        self.failed_rank: int | None = None  # the first host seen failing
        self._peers_ended_at: float | None = None

    def poll(self) -> int | None:
        codes = [member.poll() for member in self.members]
        if self.failed_rank is None:
            self.failed_rank = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if None not in codes:
            return self.exit_code(codes)
        if self.failed_rank is not None:
            self._end_peers()
        return None

    def _end_peers(self) -> None:
        if self._peers_ended_at is None:
            self._peers_ended_at = time.monotonic()
            self.terminate()
        elif time.monotonic() - self._peers_ended_at > self.grace_seconds:
            self.kill()

    def exit_code(self, codes: list[int | None]) -> int | None:
        """The failed host's code (the cause, not its peers' SIGTERM), else 0."""
        if self.failed_rank is not None:
            return codes[self.failed_rank]
        return next((code for code in codes if code != 0), 0)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        codes: list[int | None] = []
        for member in self.members:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            codes.append(member.wait(left))
        if self.failed_rank is None:
            self.failed_rank = next((i for i, code in enumerate(codes) if code != 0), None)
        code = self.exit_code(codes)
        assert code is not None
        return code

    def terminate(self) -> None:
        for member in self.members:
            member.terminate()

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def cleanup(self) -> None:
        for member in self.members:
            member.cleanup()

    def record(self) -> dict[str, Any]:
        if len(self.members) == 1:
            return self.members[0].record()
        return {"kind": "group", "members": [member.record() for member in self.members]}
