"""The summary index: one row per run, so list pages never parse every job.

For local backends (the optional capability: a ``jobdir(name)`` and
``settings.jobs_root``) a refresh reads again, through the backend, only the
jobs that have not finished (their status moves; their supervisor may die).
A finished job's status no longer changes, so while the jobs folder's own
mtime stands still (no job created or deleted) nothing else is touched; when
it moves, and every ``full_scan`` seconds anyway, the folder is listed and
each job's ``status.json`` stat'd: only jobs whose stat changed are read. Other
backends (kubernetes) are listed through ``backend.list()`` at most every
``ttl`` seconds. Either way the rows come from ``backend.get``/``list``: one
code path for what a row says.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import TrainforgeError
from ..instances import lookup
from ..spec import TrainingJob, check_job_name
from ..tuning.trials import TRIAL_LABEL, TUNING_JOB_LABEL
from .query import search_text

log = logging.getLogger(__name__)


def cost(job: TrainingJob) -> float | None:
    """Billable seconds at the instance type's hourly price (None: type unknown)."""
    status = job.status
    try:
        price = lookup(job.spec.instance.type).hourly_price
    except KeyError:
        return None
    seconds = status.billable_seconds if status else 0
    return round(price * job.spec.instance.count * seconds / 3600.0, 6)


def summary_row(job: TrainingJob) -> dict[str, Any]:
    status = job.status
    labels = dict(job.metadata.labels)
    trial = labels.get(TRIAL_LABEL)
    row: dict[str, Any] = {
        "name": job.name,
        "namespace": job.metadata.namespace,
        "phase": status.phase.value if status else "Pending",
        "labels": labels,
        "hyperparameters": dict(job.spec.hyperparameters),
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in (status.final_metrics if status else {}).items()},
        "start_time": status.start_time if status else None,
        "end_time": status.end_time if status else None,
        "billable_seconds": status.billable_seconds if status else 0,
        "cost": cost(job),
        "instance": f"{job.spec.instance.type}" + (f" x{job.spec.instance.count}" if job.spec.instance.count > 1 else ""),
        "image": job.spec.image,
        "tuning_job": labels.get(TUNING_JOB_LABEL),
        "trial": int(trial) if trial and trial.isdigit() else None,
        "attempts": status.attempts if status else 0,
        "message": (status.failure_reason or status.message) if status else "",
        "finished": bool(status and status.phase.finished),
    }
    row["search"] = search_text(row)
    return row


class RunIndex:
    """Rows for every run of one backend, refreshed at most every ``interval`` s."""

    def __init__(self, backend: Any, interval: float = 1.0, ttl: float = 3.0, full_scan: float = 30.0):
        self.backend = backend
        self.interval = interval
        self.ttl = ttl
        self.full_scan = full_scan
        self._root_stamp: tuple[int, int] | None = None
        self._scanned = -math.inf
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        self._refreshed = -math.inf
        self.version = 0
        self._ordered: list[dict[str, Any]] = []

    @property
    def local(self) -> bool:
        return hasattr(self.backend, "jobdir") and hasattr(getattr(self.backend, "settings", None), "jobs_root")

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._refreshed >= (self.interval if self.local else self.ttl):
                changed = self._refresh_local() if self.local else self._refresh_listed()
                self._refreshed = time.monotonic()
                if changed:
                    self.version += 1
                    self._ordered = list(self._rows.values())
            return self._ordered

    def row(self, name: str) -> dict[str, Any] | None:
        self.rows()
        return self._rows.get(name)

    def _refresh_listed(self) -> bool:
        rows = {job.name: summary_row(job) for job in self.backend.list()}
        changed = rows != self._rows
        self._rows = rows
        return changed

    def _refresh_local(self) -> bool:
        root = self.backend.settings.jobs_root
        try:
            st = os.stat(root)
            root_stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_nlink)
        except OSError:
            root_stamp = None
        if root_stamp == self._root_stamp and time.monotonic() - self._scanned < self.full_scan:
            return self._refresh_unfinished()
        self._root_stamp, self._scanned = root_stamp, time.monotonic()
        return self._scan(root)

    def _refresh_unfinished(self) -> bool:
        changed = False
        for name, old in list(self._rows.items()):
            if old["finished"]:
                continue
            try:
                row = summary_row(self.backend.get(name))
            except TrainforgeError:
                continue
            if row != old:
                self._rows[name] = row
                changed = True
        return changed

    def _scan(self, root: Any) -> bool:
        seen: set[str] = set()
        changed = False
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            name = entry.name
            try:
                check_job_name(name)
                stat = os.stat(os.path.join(entry.path, "status.json"))
            except (TrainforgeError, OSError):
                continue  # not a job folder, or one still being created
            stamp = (stat.st_mtime_ns, stat.st_size)
            seen.add(name)
            old = self._rows.get(name)
            if old is not None and self._stamps.get(name) == stamp and old["finished"]:
                continue
            try:
                row = summary_row(self.backend.get(name))
            except TrainforgeError as exc:
                log.debug("skipping job %s: %s", name, exc)
                continue
            self._stamps[name] = stamp
            if row != old:
                self._rows[name] = row
                changed = True
        for gone in set(self._rows) - seen:
            del self._rows[gone]
            self._stamps.pop(gone, None)
            changed = True
        return changed


def tuning_rows(index: RunIndex, tuning_name: str) -> list[Mapping[str, Any]]:
    return sorted((r for r in index.rows() if r.get("tuning_job") == tuning_name and r.get("trial") is not None),
                  key=lambda r: r["trial"])
