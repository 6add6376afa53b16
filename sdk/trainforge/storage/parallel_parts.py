"""All the parts of one object moved on a pool of threads, or none of them:
what the ranged download (ranged.py) and the parted upload (multipart.py)
share. A part that cannot be moved raises Abandoned and the whole attempt
ends (the caller starts again another way); any other exception (a disk
error, a stop raised by progress) ends it too and is raised as it is. Either
way the parts not yet started are skipped and the progress reported is
taken back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Abandoned(Exception):
    """A part could not be moved: the whole transfer falls back."""


class PartPool(Generic[T, R]):
    """Runs ``move(part)`` for every part; :meth:`moved` reports bytes to ``advance``."""

    def __init__(self, advance: Callable[[int], None]):
        self._advance = advance
        self.abandon = threading.Event()  # set at the first failure: the rest stop early
        self._moved = 0
        self._lock = threading.Lock()

    def moved(self, n: int) -> None:
        """``n`` more bytes moved; ``advance`` may raise to stop the transfer."""
        with self._lock:
            self._moved += n
        self._advance(n)

    def run(self, move: Callable[[T], R], parts: Iterable[T], threads: int, name: str) -> list[R] | None:
        """Every part's result in order, or None where one was abandoned
        (progress taken back); other exceptions propagate."""

        def guarded(part: T) -> R | None:
            if self.abandon.is_set():
                return None
            try:
                return move(part)
            except BaseException:
                self.abandon.set()
                raise

        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name) as pool:
            futures = [pool.submit(guarded, part) for part in parts]
            results: list[R] = []
            failures: list[BaseException] = []
            for future in futures:  # every part is waited for, even after a failure
                try:
                    result = future.result()
                except BaseException as exc:  # noqa: BLE001 (raised below, the real error first)
                    failures.append(exc)
                else:
                    if result is not None:
                        results.append(result)
        for failure in failures:
            if not isinstance(failure, Abandoned):
                raise failure
        if failures:
            self._advance(-self._moved)
            return None
        return results
