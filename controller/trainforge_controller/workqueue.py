"""The work queue between the watches and the workers (client-go's workqueue,
plus a lane for urgent keys).

- A key is queued at most once; a key being reconciled is not handed out again
  until ``done`` (an ``add`` meanwhile marks it dirty: it comes back after).
- ``add(key, after=s)`` delays it (requeue-after, backoff); the earliest wins.
- ``add(key, urgent=True)`` puts it ahead of the rest: a TrainingJob the
  controller has never written a status for is waiting for its first Job, and
  that wait is what users feel. Follow-up passes (pod and Job events, the
  billing clock, resync) wait behind it; without the lane, a burst of
  submissions queues each new job behind every older job's follow-ups.
- ``first(key)`` names keys served ahead of the rest at the same urgency (the
  controller's TuningJobs: a tuning pass creates the trials whose GPUs sit
  idle meanwhile, one key against thousands of trials' follow-ups), and
  ``get(..., first_only=True)`` is a worker reserved for them, so they never
  wait behind a backlog of the others.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    def __init__(self, first: Callable[[Key], bool] = lambda key: False) -> None:
        lock = threading.Lock()
        self._cv = threading.Condition(lock)  # any worker
        self._cv_first = threading.Condition(lock)  # the workers reserved for ``first`` keys
        self._first = first
        # (urgent, first) -> its lane; served in this order
        self._lanes: dict[tuple[bool, bool], deque[Key]] = {
            (True, True): deque(), (True, False): deque(), (False, True): deque(), (False, False): deque()}
        self._queued: dict[Key, bool] = {}  # key -> urgent; the deques may hold stale copies
        self._busy: set[Key] = set()
        self._dirty: dict[Key, bool] = {}  # added while busy -> re-queued by done(), urgent or not
        self._delayed: list[tuple[float, int, Key]] = []
        self._waiting: dict[Key, float] = {}  # key -> when it is due; one per key, the earliest
        self._sequence = 0  # ties in the heap never compare keys
        # Wall clock when a key was first queued, until a worker takes it (the
        # controller's trace: how long a key waited for a worker).
        self._since: dict[Key, float] = {}
        self._taken_since: dict[Key, float] = {}

    def add(self, key: Key, after: float = 0.0, urgent: bool = False) -> None:
        with self._cv:
            if after > 0:
                due = time.monotonic() + after
                if self._waiting.get(key, due + 1) > due:
                    self._waiting[key] = due
                    self._sequence += 1
                    heapq.heappush(self._delayed, (due, self._sequence, key))
            elif key in self._busy:
                self._dirty[key] = self._dirty.get(key, False) or urgent
                self._since.setdefault(key, time.time())  # asked for now, though served after this pass
            else:
                self._enqueue(key, urgent)
            self._notify()

    def _notify(self) -> None:
        # Both kinds of waiter: a reserved one woken for another key sleeps again.
        self._cv.notify()
        self._cv_first.notify()

    def _enqueue(self, key: Key, urgent: bool) -> None:
        held = self._queued.get(key)
        self._since.setdefault(key, time.time())
        if held is None or (urgent and not held):  # new, or promoted (the normal copy goes stale)
            self._queued[key] = urgent
            self._lanes[(urgent, self._first(key))].append(key)

    def get(self, stop: threading.Event, timeout: float = 0.5, first_only: bool = False) -> Key | None:
        """The next key (urgent first, then ``first`` keys first), or None once
        ``stop`` is set; with ``first_only`` only a ``first`` key."""
        cv = self._cv_first if first_only else self._cv
        with cv:
            while not stop.is_set():
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    due, _, key = heapq.heappop(self._delayed)
                    if self._waiting.get(key) != due:  # superseded by an earlier time
                        continue
                    del self._waiting[key]
                    if key in self._busy:
                        self._dirty.setdefault(key, False)
                    else:
                        self._enqueue(key, False)
                        if first_only != self._first(key):  # due now, but not for this worker
                            self._notify()
                for (urgent, first), lane in self._lanes.items():
                    if first_only and not first:
                        continue
                    while lane:
                        key = lane.popleft()
                        if self._queued.get(key) is urgent:  # else a stale copy: skip it
                            del self._queued[key]
                            self._busy.add(key)
                            self._taken_since[key] = self._since.pop(key, time.time())
                            return key
                wait = timeout if not self._delayed else min(timeout, self._delayed[0][0] - now)
                cv.wait(max(0.01, wait))
        return None

    def queued_since(self, key: Key) -> float | None:
        """Wall clock when the key a worker holds was queued (``time.time()``)."""
        with self._cv:
            return self._taken_since.get(key)

    def done(self, key: Key) -> None:
        with self._cv:
            self._busy.discard(key)
            self._taken_since.pop(key, None)
            if key in self._dirty:
                self._enqueue(key, self._dirty.pop(key))
                self._notify()

    def __len__(self) -> int:
        with self._cv:
            return len(self._queued)
