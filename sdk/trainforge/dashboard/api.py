"""The JSON API behind the pages (documented in the README, usable by
scripts): one method per endpoint, each answering a plain dict. Everything
is read through the backends — ``get``/``list``/``logs``/``metrics``/``stop``
and the tuning backend — never from files of its own."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import BackendError, JobNotFound, TrainforgeError
from ..spec import check_job_name
from .index import RunIndex, summary_row, tuning_rows
from .lttb import lttb
from .query import (
    QueryError,
    column_catalog,
    parse_query,
    project,
    select,
    select_sorted,
)

log = logging.getLogger(__name__)

MAX_WIDTH = 4000           # points per curve a page may ask for
MAX_COMPARE = 12           # runs overlaid at once
LOG_TAIL = 2000            # lines a run page starts with, and at most per event (a flood is cut to its tail)
SERIES_CACHE = 64          # parsed metric series kept (per job)
MAX_FINISHED_TAILS = 32    # logs of finished runs kept for pages opened again
ARTIFACT_KINDS = ("model", "output", "metrics")


class NotFound(TrainforgeError):
    """No such run, tuning job or artifact."""


@dataclass
class Series:
    version: Any
    data: dict[str, tuple[np.ndarray, np.ndarray]]
    sampled: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def downsampled(self, metric: str, width: int) -> dict[str, Any]:
        """The curve cut to ``width`` points (LTTB), cached per width."""
        key = (metric, width)
        found = self.sampled.get(key)
        if found is None:
            x, y = self.data[metric]
            dx, dy = lttb(x, y, width)
            found = {"x": _jsonable(dx), "y": _jsonable(dy), "points": len(x),
                     "last": None if not len(y) or not math.isfinite(y[-1]) else float(y[-1])}
            if len(self.sampled) > 64:
                self.sampled.clear()
            self.sampled[key] = found
        return found


def _series_from_records(records: list[Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (x, y), x the step where every record of the name has one,
    else the record's position; x ascending."""
    grouped: dict[str, tuple[list[float], list[Any]]] = {}
    for r in records:
        ys, steps = grouped.setdefault(r.name, ([], []))
        ys.append(r.value)
        steps.append(r.step)
    out = {}
    for name, (ys, steps) in grouped.items():
        y = np.asarray(ys, dtype=np.float64)
        known = all(s is not None for s in steps)
        out[name] = _by_step(np.asarray(steps, dtype=np.float64) if known else None, y)
    return out


def _by_step(x: np.ndarray | None, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A series in step order (stable); without steps, numbered 1..n."""
    if x is None:
        return np.arange(1, len(y) + 1, dtype=np.float64), y
    if len(x) > 1 and not bool(np.all(x[1:] >= x[:-1])):
        order = np.argsort(x, kind="stable")
        return x[order], y[order]
    return x, y


def _series_from_columns(columns: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """As _series_from_records, from a backend's columns (``metric_columns``:
    per metric float64 step (NaN: none), value, time, merged by time)."""
    out = {}
    for name, c in columns.items():
        known = len(c.step) and not np.isnan(c.step).any()
        out[name] = _by_step(c.step if known else None, c.value)
    return out


def _jsonable(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]


class DashboardAPI:
    def __init__(self, backend: Any, tuning: Any | None = None, index: RunIndex | None = None):
        self.backend = backend
        self.tuning = tuning
        self.index = index or RunIndex(backend)
        self._series: dict[str, Series] = {}
        self._ordered: dict[tuple[Any, ...], list[Any]] = {}
        self._catalog: tuple[int, dict[str, Any]] | None = None
        self._tails: dict[str, LogTail] = {}
        self._tails_lock = threading.Lock()
        self._series_lock = threading.Lock()

    # -- runs -------------------------------------------------------------------
    def runs(self, params: Mapping[str, str]) -> dict[str, Any]:
        query = parse_query(params)
        version = self.index.version  # read first: rows newer than their key only cost a re-sort
        rows = self.index.rows()
        key = (version, query.sort, query.descending)
        ordered = self._ordered.get(key)
        if ordered is None:  # sorted once per index version and sort order
            ordered = select(rows, replace(query, status=frozenset(), labels=(), tuning_job=None, text="",
                                           offset=0, limit=len(rows) or 1))[1]
            if len(self._ordered) > 16:
                self._ordered.clear()
            self._ordered[key] = ordered
        total, page = select_sorted(ordered, query)
        return {"total": total, "offset": query.offset, "limit": query.limit, "columns": list(query.columns),
                "sort": query.sort, "descending": query.descending, "version": version,
                "rows": [project(r, query.columns) for r in page]}

    def columns(self) -> dict[str, Any]:
        version = self.index.version
        rows = self.index.rows()
        if self._catalog is None or self._catalog[0] != version:
            self._catalog = (version, column_catalog(rows))
        return self._catalog[1]

    def _job(self, name: str) -> Any:
        check_job_name(name)
        try:
            return self.backend.get(name)
        except JobNotFound as exc:
            raise NotFound(str(exc)) from exc

    def run(self, name: str) -> dict[str, Any]:
        job = self._job(name)
        row = summary_row(job)
        document = job.to_dict()
        status = document.pop("status", {})
        row.pop("search", None)
        return {"summary": row, "spec": document, "status": status,
                "artifacts": [{"kind": k, "uri": getattr(job.status.artifacts, k)}
                              for k in ARTIFACT_KINDS if job.status and getattr(job.status.artifacts, k)]}

    def _version(self, name: str, job: Any) -> Any:
        """What changes when a job's metrics may have: for local jobs the stat
        of its metric files and status, else the phase (finished jobs never change)
        or the clock (running ones, every 2 s)."""
        jobdir = getattr(self.backend, "jobdir", None)
        if jobdir is not None:
            d = jobdir(name)
            stamps = []
            for path in (d.status_file, d.metrics_file, d.layout.metrics_file):
                try:
                    st = os.stat(path)
                    stamps.append((st.st_mtime_ns, st.st_size))
                except OSError:
                    stamps.append(None)
            return tuple(stamps)
        phase = job.status.phase if job.status else None
        return ("finished", phase) if phase is not None and phase.finished else ("t", int(time.time() / 2))

    def series(self, name: str) -> Series:
        job = self._job(name)
        version = self._version(name, job)
        with self._series_lock:
            cached = self._series.get(name)
            if cached is not None and cached.version == version:
                return cached
        fresh = Series(version, self._read_series(name))
        with self._series_lock:
            self._series[name] = fresh
            while len(self._series) > SERIES_CACHE:
                self._series.pop(next(iter(self._series)))
        return fresh

    def _read_series(self, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """From the backend's columnar cache where it has one (local jobs: a
        million points read as arrays, not parsed), else from its records."""
        columns = getattr(self.backend, "metric_columns", None)
        if columns is not None:
            try:
                return _series_from_columns(columns(name))
            except BackendError as exc:
                log.warning("%s; reading its records instead", exc)
        return _series_from_records(self.backend.metrics(name))

    def metrics(self, name: str, params: Mapping[str, str]) -> dict[str, Any]:
        width = _width(params)
        wanted = {n for n in params.get("names", "").split(",") if n}
        series = self.series(name)
        out = {}
        for metric in sorted(series.data):
            if wanted and metric not in wanted:
                continue
            out[metric] = series.downsampled(metric, width)
        return {"name": name, "width": width, "version": str(hash(series.version)), "series": out}

    def logs(self, name: str, params: Mapping[str, str]) -> dict[str, Any]:
        self._job(name)
        tail = min(_int_param(params, "tail", LOG_TAIL), 100_000)
        lines: deque[str] = deque(maxlen=tail)
        total = 0
        for line in self.backend.logs(name, follow=False):
            lines.append(line)
            total += 1
        return {"name": name, "lines": list(lines), "total": total}

    def stop(self, name: str) -> dict[str, Any]:
        self._job(name)
        self.backend.stop(name)
        return {"name": name, "stopping": True}

    def artifact(self, name: str, kind: str) -> tuple[str, str]:
        """(URI, file name) of one of the run's artifacts."""
        if kind not in ARTIFACT_KINDS:
            raise NotFound(f"no artifact kind {kind[:40]!r} (expected {', '.join(ARTIFACT_KINDS)})")
        job = self._job(name)
        uri = getattr(job.status.artifacts, kind) if job.status else None
        if not uri:
            raise NotFound(f"run {name} has no {kind} artifact")
        return uri, f"{name}-{uri.rstrip('/').rsplit('/', 1)[-1]}"

    def compare(self, params: Mapping[str, str]) -> dict[str, Any]:
        names = [n for n in params.get("runs", "").split(",") if n]
        if not 1 <= len(names) <= MAX_COMPARE:
            raise QueryError(f"runs: expected 1..{MAX_COMPARE} run names separated by commas, got {len(names)}")
        width = _width(params)
        runs, curves = [], {}
        for name in names:
            job = self._job(name)
            row = summary_row(job)
            runs.append({k: row[k] for k in ("name", "phase", "hyperparameters", "metrics", "billable_seconds",
                                             "cost", "instance", "tuning_job")})
            series = self.series(name)
            for metric in series.data:
                sampled = series.downsampled(metric, width)
                curves.setdefault(metric, {})[name] = {"x": sampled["x"], "y": sampled["y"]}
        differences = []
        for section in ("hyperparameters", "metrics"):
            keys = sorted({k for r in runs for k in r[section]})
            for key in keys:
                values = [r[section].get(key) for r in runs]
                differences.append({"section": section, "key": key, "values": values,
                                    "differs": len({repr(v) for v in values}) > 1})
        return {"runs": runs, "curves": curves, "differences": differences}

    # -- live -------------------------------------------------------------------
    def _tail(self, name: str) -> LogTail:
        """The one log reader of a run, shared by every page open on it."""
        with self._tails_lock:
            tail = self._tails.get(name)
            if tail is None:
                tail = self._tails[name] = LogTail(self.backend, name)
                done = [n for n, t in self._tails.items() if t.done]
                for old in done[:max(0, len(done) - MAX_FINISHED_TAILS)]:
                    del self._tails[old]
            return tail

    def events(self, name: str, stop: threading.Event, poll: float = 1.0) -> Iterator[tuple[str, Any]]:
        """Server-sent events of one run page: ``logs`` (new lines, in batches),
        ``status`` (when the summary changes) and ``metrics`` (a new version:
        the page fetches the downsampled curves). Per open page: one status
        poll per ``poll`` seconds; the log is read by one thread per run
        whatever the number of pages (LogTail). Ends when the run has finished
        and everything is sent, or when ``stop`` is set (the page went away)."""
        self._job(name)
        tail = self._tail(name)
        seq = 0
        last_row: Any = None
        last_version: Any = None
        while not stop.is_set():
            batch, seq, skipped, logs_done = tail.since(seq, timeout=poll)
            sent = False
            if batch or skipped:
                sent = True
                yield "logs", {"lines": batch, "skipped": skipped}
            if logs_done and not batch:
                time.sleep(poll)  # nothing more to read: only status and metrics
            job = self._job(name)
            row = summary_row(job)
            row.pop("search", None)
            if row != last_row:
                last_row, sent = row, True
                yield "status", {"summary": row, "conditions": [c.model_dump(by_alias=True) for c in
                                                                job.status.conditions] if job.status else []}
            version = self._version(name, job)
            if version != last_version:
                last_version, sent = version, True
                yield "metrics", {"version": str(hash(version))}
            if row["finished"] and logs_done and seq >= tail.seq:
                yield "end", {"phase": row["phase"]}
                return
            if not sent:
                yield "ping", None  # a write is how a server notices the page went away


    # -- tuning -----------------------------------------------------------------
    def _tuning_backend(self) -> Any:
        if self.tuning is None:
            raise BackendError(f"tuning jobs are not available with the {self.backend.name} backend")
        return self.tuning

    def tuning_jobs(self) -> dict[str, Any]:
        if self.tuning is None:
            return {"available": False, "jobs": []}
        out = []
        for t in self.tuning.list():
            s = t.status
            out.append({"name": t.name, "phase": s.phase if s else "Pending", "objective": t.spec.objective.metric,
                        "type": t.spec.objective.type.value, "strategy": t.spec.strategy.type.value,
                        "trials": s.trials.model_dump() if s else {}, "start_time": s.start_time if s else None,
                        "best": s.best_trial.model_dump() if s and s.best_trial else None})
        return {"available": True, "jobs": out}

    def tuning_job(self, name: str) -> dict[str, Any]:
        tuning_backend = self._tuning_backend()
        check_job_name(name)
        try:
            tuning = tuning_backend.get(name)
        except JobNotFound as exc:
            raise NotFound(str(exc)) from exc
        spec = tuning.spec
        maximize = spec.objective.type.value == "Maximize"
        stops = tuning_backend.dir(name).early_stops()
        trials, best_so_far, best = [], [], None
        for row in tuning_rows(self.index, name):
            number = row["trial"]
            completed = row["phase"] == "Completed"
            objective = row["metrics"].get(spec.objective.metric) if completed else None
            if objective is not None and (best is None or (objective > best if maximize else objective < best)):
                best = objective
            best_so_far.append(best)
            state = "EarlyStopped" if number in stops else row["phase"]
            trials.append({"number": number, "name": row["name"], "phase": row["phase"], "state": state,
                           "objective": objective, "reason": stops.get(number) or (
                               row["message"] if not completed and row["finished"] else None),
                           "hyperparameters": {p.name: row["hyperparameters"].get(p.name) for p in spec.parameters},
                           "billable_seconds": row["billable_seconds"], "cost": row["cost"],
                           "start_time": row["start_time"], "end_time": row["end_time"]})
        status = tuning.status
        return {
            "name": name, "phase": status.phase if status else "Pending",
            "message": (status.failure_reason or status.message) if status else "",
            "objective": {"metric": spec.objective.metric, "type": spec.objective.type.value},
            "strategy": spec.strategy.type.value,
            "parameters": [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in spec.parameters],
            "counts": status.trials.model_dump() if status else {},
            "best": status.best_trial.model_dump() if status and status.best_trial else None,
            "limits": spec.limits.model_dump(by_alias=True),
            "trials": trials, "best_so_far": best_so_far,
        }

    def stop_tuning(self, name: str) -> dict[str, Any]:
        tuning_backend = self._tuning_backend()
        check_job_name(name)
        try:
            tuning_backend.stop(name)
        except JobNotFound as exc:
            raise NotFound(str(exc)) from exc
        return {"name": name, "stopping": True}


class LogTail:
    """A run's log followed by one thread (``backend.logs(follow=True)``)
    into a ring of its last LOG_TAIL lines; pages read it by sequence number.
    The thread ends when the run has finished and its log is read."""

    def __init__(self, backend: Any, name: str):
        self.lines: deque[str] = deque(maxlen=LOG_TAIL)
        self.seq = 0  # lines read so far
        self.done = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(backend, name), name=f"log-tail-{name}",
                                        daemon=True)
        self._thread.start()

    def _read(self, backend: Any, name: str) -> None:
        try:
            for line in backend.logs(name, follow=True):
                with self._changed:
                    self.lines.append(line)
                    self.seq += 1
                    self._changed.notify_all()
        except TrainforgeError as exc:
            log.debug("log of %s: %s", name, exc)
        finally:
            with self._changed:
                self.done = True
                self._changed.notify_all()

    def since(self, seq: int, timeout: float) -> tuple[list[str], int, int, bool]:
        """(lines after ``seq`` — the newest LOG_TAIL at most —, the new sequence
        number, lines skipped, whether the log is complete)."""
        with self._changed:
            if self.seq == seq and not self.done:
                self._changed.wait(timeout)
                if self.seq == seq and not self.done:
                    return [], seq, 0, False
            new = self.seq - seq
            keep = min(new, len(self.lines))
            lines = list(self.lines)[len(self.lines) - keep:] if keep else []
            return lines, self.seq, new - keep, self.done


def _int_param(params: Mapping[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise QueryError(f"{key}: expected an integer, got {raw[:40]!r}") from None
    if value < 1:
        raise QueryError(f"{key}: expected a positive integer, got {value}")
    return value


def _width(params: Mapping[str, str]) -> int:
    return min(_int_param(params, "width", 1000), MAX_WIDTH)
