"""Polling on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class TimedOut(AssertionError):
    """A condition did not hold before its deadline."""


class Watched(Protocol):
    """A process whose early death should end the wait (see processes.ServerProcess)."""

    def failure(self) -> str | None: ...


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    watch: Iterable[Watched] = (),
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Exceptions from ``check`` count as "not yet" (a server still starting
    refuses connections); the last one is quoted if the deadline passes. A
    watched process that exits ends the wait at once with its log tail.
    """
    watch = list(watch)
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for process in watch:
            failure = process.failure()
            if failure:
                raise TimedOut(f"while waiting for {what}: {failure}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - "not yet", reported on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimedOut(f"{what} did not happen within {timeout:.0f}s{detail}")
        time.sleep(interval)
