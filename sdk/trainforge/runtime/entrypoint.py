"""The body of a trainer's ``main``: run ``train`` and turn how it ended into
what the platform reads, the exit code and the failure file.

    def main() -> int:
        return runtime.run_trainer(train)
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from .failure import write_failure
from .signals import STOPPED_EXIT_CODE


class Stopped(Exception):
    """Raise when a stop signal ended training cleanly (after a checkpoint);
    the message becomes the job's failure reason."""


def run_trainer(train: Callable[[], object]) -> int:
    """0 when ``train`` returns; ``STOPPED_EXIT_CODE`` on ``Stopped``; 1 on any
    other exception (traceback to the log, the exception to the failure file)."""
    started = time.monotonic()
    try:
        train()
    except Stopped as stop:
        print(str(stop), flush=True)
        write_failure(str(stop))
        return STOPPED_EXIT_CODE
    except Exception as exc:  # noqa: BLE001 - any failure becomes the job's failure reason
        traceback.print_exc()
        write_failure(exc)
        return 1
    print(f"finished in {time.monotonic() - started:.1f}s", flush=True)
    return 0
