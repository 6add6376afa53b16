"""The summary index: one row per run, so list pages never parse every job.

For local backends (the optional capability: a ``jobdir(name)`` and
``settings.jobs_root``) a refresh reads again, through the backend, only the
jobs that have not finished (their status moves; their supervisor may die).
A finished job's status no longer changes, so while the jobs folder's own
mtime stands still (no job created or deleted) nothing else is touched; when
it moves, and every ``full_scan`` seconds anyway, the folder is listed and
each job's ``status.json`` stat'd: only jobs whose stat changed are read. The rows
of finished jobs are kept in ``<home>/dashboard/index.json`` with their
stamps, so a restarted server reads one file instead of every job. Other
backends (kubernetes) are listed through ``backend.list()`` at most every
``ttl`` seconds. Either way the rows come from ``backend.get``/``list``: one
code path for what a row says.
"""

from __future__ import annotations

import json
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
        self._cache_file = (self.backend.settings.home / "dashboard" / "index.json") if self.local else None
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        self._refreshed = -math.inf
        self.version = 0
        self._ordered: list[dict[str, Any]] = []
        self._load_cache()

    @property
    def local(self) -> bool:
        return hasattr(self.backend, "jobdir") and hasattr(getattr(self.backend, "settings", None), "jobs_root")

    def rows(self, wait: bool = False) -> list[dict[str, Any]]:
        """Every row. The first call (and ``wait``) refreshes in the caller;
        later ones answer at once and, when a refresh is due, start it in the
        background: a request never waits for a scan of every job folder."""
        if self.version == 0 or wait:
            with self._lock:
                self._refresh(periodic_scan=self.version == 0)  # the periodic full scan stays in the background
            return self._ordered
        due = time.monotonic() - self._refreshed >= (self.interval if self.local else self.ttl)
        if due and self._lock.acquire(blocking=False):
            threading.Thread(target=self._background, name="dashboard-index", daemon=True).start()
        return self._ordered

    def _background(self) -> None:
        try:
            self._refresh()
        except Exception:  # a refresh that failed is tried again on the next request
            log.exception("refreshing the dashboard index failed")
        finally:
            self._lock.release()

    def _refresh(self, periodic_scan: bool = True) -> None:
        changed = self._refresh_local(periodic_scan) if self.local else self._refresh_listed()
        self._refreshed = time.monotonic()
        if changed or self.version == 0:
            self._ordered = list(self._rows.values())
            self.version += 1

    def row(self, name: str) -> dict[str, Any] | None:
        self.rows()
        return self._rows.get(name)

    def _refresh_listed(self) -> bool:
        rows = {job.name: summary_row(job) for job in self.backend.list()}
        changed = rows != self._rows
        self._rows = rows
        return changed

    def _refresh_local(self, periodic_scan: bool = True) -> bool:
        root = self.backend.settings.jobs_root
        try:
            st = os.stat(root)
            root_stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_nlink)
        except OSError:
            root_stamp = None
        if root_stamp == self._root_stamp and (not periodic_scan or time.monotonic() - self._scanned < self.full_scan):
            return self._refresh_unfinished()
        self._root_stamp, self._scanned = root_stamp, time.monotonic()
        return self._scan(root)

    def _load_cache(self) -> None:
        """Rows of finished jobs from the last run; a scan still checks each stamp."""
        if self._cache_file is None:
            return
        try:
            cached = json.loads(self._cache_file.read_text(encoding="utf-8"))
            for name, entry in cached["rows"].items():
                if entry["row"]["finished"] and entry["row"]["name"] == name:
                    row = entry["row"]
                    row["search"] = search_text(row)
                    self._rows[name], self._stamps[name] = row, tuple(entry["stamp"])  # type: ignore[assignment]
        except (OSError, ValueError, KeyError, TypeError):
            self._rows.clear()
            self._stamps.clear()

    def _save_cache(self) -> None:
        if self._cache_file is None:
            return
        from ..backends.local.jobdir import write_atomically

        rows = {n: {"stamp": list(self._stamps[n]), "row": {k: v for k, v in r.items() if k != "search"}}
                for n, r in self._rows.items() if r["finished"] and n in self._stamps}
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self._cache_file, json.dumps({"version": 1, "rows": rows}, separators=(",", ":")))
        except OSError as exc:
            log.debug("cannot keep the dashboard index in %s: %s", self._cache_file, exc)

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
        restamped = False
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
            restamped = restamped or self._stamps.get(name) != stamp
            self._stamps[name] = stamp
            if row != old:
                self._rows[name] = row
                changed = True
        for gone in set(self._rows) - seen:
            del self._rows[gone]
            self._stamps.pop(gone, None)
            changed = True
        if changed or restamped:
            self._save_cache()
        return changed


def tuning_rows(index: RunIndex, tuning_name: str) -> list[Mapping[str, Any]]:
    return sorted((r for r in index.rows(wait=True) if r.get("tuning_job") == tuning_name and r.get("trial") is not None),
                  key=lambda r: r["trial"])
