"""workqueue: dedup, busy keys, delays and the urgent lane (no API)."""

from __future__ import annotations

import threading
import time

from trainforge_controller.workqueue import WorkQueue

STOP = threading.Event()


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while len(q):
        key = q.get(STOP, timeout=0.01)
        assert key is not None
        out.append(key)
        q.done(key)
    return out


def test_keys_are_deduplicated_in_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in "abab":
        q.add(key)
    assert drain(q) == ["a", "b"]


def test_urgent_keys_go_first_and_a_promoted_key_runs_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("old-1", "old-2", "both"):
        q.add(key)
    q.add("new", urgent=True)
    q.add("both", urgent=True)  # was waiting in the normal lane
    assert drain(q) == ["new", "both", "old-1", "old-2"]


def test_a_busy_key_is_not_handed_out_twice_and_comes_back_once_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    assert q.get(STOP) == "a"
    q.add("a", urgent=True)  # changed while being reconciled
    q.add("a")
    assert q.get(STOP) == "b"
    q.done("b")
    assert len(q) == 0  # "a" waits for its running pass to end
    q.done("a")
    assert drain(q) == ["a"]


def test_delayed_add_keeps_the_earliest_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", after=30)
    q.add("a", after=0.05)
    q.add("a", after=60)
    started = time.monotonic()
    assert q.get(STOP, timeout=1) == "a"
    assert time.monotonic() - started < 5
    q.done("a")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert q.get(stop) is None  # the 30 s and 60 s adds did not queue it again


def test_delayed_key_due_while_busy_runs_again_after() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(STOP) == "a"
    q.add("a", after=0.01)
    time.sleep(0.05)
    q.add("z")
    assert q.get(STOP, timeout=1) == "z"  # the due "a" is busy: not handed out
    q.done("z")
    q.done("a")
    assert drain(q) == ["a"]


def test_get_returns_none_once_stopped() -> None:
    q: WorkQueue[str] = WorkQueue()
    stop = threading.Event()
    stop.set()
    q.add("a")
    assert q.get(stop) is None


def test_a_key_remembers_when_it_was_first_asked_for() -> None:
    """The trace's 'queued': the first add, kept through later adds and
    through a pass of the same key that was running when it was asked for."""
    q: WorkQueue[str] = WorkQueue()
    before = time.time()
    q.add("a")
    q.add("a", urgent=True)
    assert q.get(STOP, timeout=0.01) == "a"
    first = q.queued_since("a")
    assert first is not None and before <= first <= time.time()
    asked = time.time()
    q.add("a")  # while its pass runs
    time.sleep(0.05)
    q.done("a")
    assert q.get(STOP, timeout=0.01) == "a"
    again = q.queued_since("a")
    assert again is not None and asked <= again < asked + 0.04
    q.done("a")
    assert q.queued_since("a") is None


def tuning_first(key: str) -> bool:
    return key.startswith("tune")


def test_first_keys_go_ahead_of_the_others_at_the_same_urgency() -> None:
    q: WorkQueue[str] = WorkQueue(first=tuning_first)
    for key in ("job-1", "job-2", "tune-a"):
        q.add(key)
    q.add("job-new", urgent=True)
    q.add("tune-b", urgent=True)
    assert drain(q) == ["tune-b", "job-new", "tune-a", "job-1", "job-2"]


def test_a_reserved_worker_takes_only_first_keys_and_is_woken_for_them() -> None:
    """A backlog of the others never holds a first key back: the reserved
    worker skips them and wakes for a first key at once (its own wait is 30 s)."""
    q: WorkQueue[str] = WorkQueue(first=tuning_first)
    for i in range(50):
        q.add(f"job-{i}", urgent=True)
    q.add("job-due", after=0.01)
    stop = threading.Event()
    got: list[str | None] = []
    reserved = threading.Thread(target=lambda: got.append(q.get(stop, timeout=30, first_only=True)))
    reserved.start()
    time.sleep(0.2)
    assert got == [] and len(q) == 51  # the backlog (and the due key) waits for the other workers
    q.add("tune-a")
    reserved.join(10)
    stop.set()
    assert got == ["tune-a"]
    assert q.get(STOP, timeout=0.01) == "job-0"
