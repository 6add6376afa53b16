"""Graceful stop: the platform sends SIGTERM, waits the grace period, then SIGKILL.

The handler only records the request (and runs the callbacks registered with
``on_stop``); the training loop asks ``stop_requested()`` at a safe point, saves
a checkpoint and exits with ``STOPPED_EXIT_CODE``. A second SIGTERM while the
first is being handled ends the process at once, as the default action would.

Nothing is installed at import: the handler goes in on the first call to
``handle_stop_signals``, ``on_stop`` or ``stop_requested`` (from the main thread,
as Python requires; elsewhere those calls only read the flag).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

STOPPED_EXIT_CODE = 128 + signal.SIGTERM  # 143, what a shell reports for a process ended by SIGTERM

StopCallback = Callable[[int], None]

_lock = threading.Lock()
_previous: dict[int, Any] = {}  # signal -> the handler before ours
_callbacks: list[StopCallback] = []
_received: int | None = None


def _handle(signum: int, frame: Any) -> None:
    global _received
    if _received is not None:  # asked twice: stop now
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received = signum
    for callback in list(_callbacks):
        try:
            callback(signum)
        except Exception:  # an exception here would surface at a random line of the training loop
            print("trainforge: an on_stop callback failed:", file=sys.stderr)
            traceback.print_exc()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)


def handle_stop_signals(signals: tuple[int, ...] = (signal.SIGTERM,)) -> bool:
    """Install the stop handler for ``signals``. Returns False when it cannot be
    installed (not the main thread). Calling it again is harmless."""
    if threading.current_thread() is not threading.main_thread():
        return all(s in _previous for s in signals)
    with _lock:
        for signum in signals:
            if signum not in _previous:
                _previous[signum] = signal.signal(signum, _handle)
    return True


def on_stop(callback: StopCallback) -> StopCallback:
    """Call ``callback(signum)`` when a stop is requested; usable as a decorator.

    It runs inside the signal handler, between two lines of the training loop:
    set flags there, don't write checkpoints (the loop may be writing one)."""
    handle_stop_signals()
    _callbacks.append(callback)
    return callback


def stop_requested() -> bool:
    """Whether the platform asked this trainer to stop (SIGTERM)."""
    handle_stop_signals()
    return _received is not None


def stop_signal() -> signal.Signals | None:
    """The signal that asked for the stop, or None."""
    return None if _received is None else signal.Signals(_received)


def wait_for_stop(timeout: float) -> bool:
    """Sleep up to ``timeout`` seconds, waking early on a stop request; returns
    ``stop_requested()``. For loops that wait (polling, throttling, test aids)."""
    deadline = time.monotonic() + max(0.0, timeout)
    while not stop_requested():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.05))
    return stop_requested()


def _reset() -> None:
    """Put back the handlers we replaced and forget requests (for tests)."""
    global _received
    with _lock:
        for signum, previous in _previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        _previous.clear()
        _callbacks.clear()
        _received = None
