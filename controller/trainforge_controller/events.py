"""Kubernetes Events, sent by one background thread so that a reconcile pass
does not wait on them. Best effort, as events are: a failed create is logged
and dropped; order is kept."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from kubernetes import client

from .wire import Wire, core_path

log = logging.getLogger("trainforge.controller")


class EventSender:
    def __init__(self, wire: Wire, capacity: int = 10000):
        self.wire = wire
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def send(self, body: dict[str, Any]) -> None:
        """Queue one Event body (``metadata.namespace`` set); never blocks."""
        self._start()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            meta = body["involvedObject"]
            log.warning("event for %s/%s dropped: %d waiting", meta["namespace"], meta["name"], self._queue.qsize())

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="trainforge-events", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                self.wire.create(core_path(body["metadata"]["namespace"], "events"), body)
            except client.ApiException as exc:
                meta = body["involvedObject"]
                log.warning("event for %s/%s: %s", meta["namespace"], meta["name"], exc.reason)
            except Exception as exc:  # noqa: BLE001 - the sender must outlive a bad event
                log.warning("event not sent: %s", exc)
            finally:
                self._queue.task_done()
