"""Progress reporting for transfers: a no-op, and a rich bar for the CLI.

Both are thread-safe: parallel transfers report from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import TransferCancelled


class NullProgress:
    """Reports nothing."""

    def start(self, total_files: int, total_bytes: int, description: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        pass

    def finish(self) -> None:
        pass


class CancellableProgress(NullProgress):
    """Cancels the transfer it watches once ``cancelled()`` says so: checked
    per chunk and per file, it raises TransferCancelled inside the copy loop,
    so the object being written is discarded (temp file) and the rest of the
    transfer is not started. ``cancelled`` must be cheap and thread-safe."""

    def __init__(self, cancelled: Callable[[], bool], reason: str = "cancelled on request"):
        self._cancelled, self._reason = cancelled, reason

    def check(self) -> None:
        if self._cancelled():
            raise TransferCancelled(self._reason)

    def start(self, total_files: int, total_bytes: int, description: str) -> None:
        self.check()

    def advance(self, nbytes: int) -> None:
        self.check()

    def file_done(self) -> None:
        self.check()


class RichProgress:
    """A rich progress bar on stderr: description, bar, bytes, files, rate, ETA.

    One instance can be used for several transfers in turn; each ``start``
    adds a bar and ``finish`` completes it. ``rich`` is imported only when
    one is made, so stores used without a CLI never load it.
    """

    def __init__(self, console: Any = None, transient: bool = False):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]}"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console if console is not None else Console(stderr=True),
            transient=transient,
        )
        self._lock = threading.Lock()
        self._task: Any = None
        self._files_total = 0
        self._files_done = 0

    def _files_text(self) -> str:
        return f"{self._files_done}/{self._files_total} files"

    def start(self, total_files: int, total_bytes: int, description: str) -> None:
        with self._lock:
            self._files_total, self._files_done = total_files, 0
            if not self._progress.live.is_started:
                self._progress.start()
            self._task = self._progress.add_task(
                description, total=max(total_bytes, 0), files=self._files_text())

    def advance(self, nbytes: int) -> None:
        task = self._task
        if task is not None:
            self._progress.advance(task, nbytes)  # rich locks internally

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
            if self._task is not None:
                self._progress.update(self._task, files=self._files_text())

    def finish(self) -> None:
        with self._lock:
            if self._task is not None:
                self._progress.update(self._task, files=self._files_text())
                self._task = None
            self._progress.stop()
