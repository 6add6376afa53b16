"""What the runs table asks of the summary index: filter, sort, paginate and
project rows. Pure: rows in, rows out (index.py keeps them fresh).

A row is a plain dict (see ``index.summary_row``). Columns a page can ask for
are the fixed ones in BASE_COLUMNS plus ``hp:<name>`` (a hyperparameter) and
``metric:<name>`` (a final metric value).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BASE_COLUMNS = ("name", "phase", "start_time", "end_time", "billable_seconds", "cost", "instance",
                "tuning_job", "attempts")
MAX_LIMIT = 500
PHASES = ("Pending", "Queued", "Staging", "Training", "Uploading", "Completed", "Failed", "Stopped")


class QueryError(ValueError):
    """A query parameter that makes no sense; the message names it."""


@dataclass(frozen=True)
class RunQuery:
    status: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str | None], ...] = ()
    tuning_job: str | None = None
    text: str = ""
    sort: str = "start_time"
    descending: bool = True
    offset: int = 0
    limit: int = 50
    columns: tuple[str, ...] = field(default_factory=tuple)


def _int(params: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{key}: expected an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise QueryError(f"{key}: expected {low}..{high}, got {value}")
    return value


def check_column(column: str, where: str) -> str:
    if column in BASE_COLUMNS or (column.startswith(("hp:", "metric:")) and len(column.split(":", 1)[1]) > 0):
        if len(column) > 300:
            raise QueryError(f"{where}: a column name is at most 300 characters")
        return column
    raise QueryError(f"{where}: unknown column {column[:60]!r} (expected one of {', '.join(BASE_COLUMNS)}, "
                     "hp:<hyperparameter> or metric:<metric>)")


def parse_query(params: Mapping[str, str]) -> RunQuery:
    """A RunQuery from URL parameters; QueryError names the bad one."""
    status = frozenset(s for s in params.get("status", "").split(",") if s)
    unknown = status - set(PHASES)
    if unknown:
        raise QueryError(f"status: unknown phase {min(unknown)[:40]!r} (expected {', '.join(PHASES)})")
    labels: list[tuple[str, str | None]] = []
    for item in (s for s in params.get("label", "").split(",") if s):
        key, sep, value = item.partition("=")
        labels.append((key.strip(), value.strip() if sep else None))
    sort = params.get("sort") or "-start_time"
    descending = sort.startswith("-") if "order" not in params else params["order"] == "desc"
    sort = check_column(sort.lstrip("-"), "sort")
    columns = tuple(check_column(c, "columns") for c in params.get("columns", "").split(",") if c)
    if len(columns) > 100:
        raise QueryError("columns: at most 100")
    return RunQuery(status=status, labels=tuple(labels), tuning_job=params.get("tuning") or None,
                    text=params.get("q", "").strip().lower()[:200], sort=sort, descending=descending,
                    offset=_int(params, "offset", 0, 0, 10**9), limit=_int(params, "limit", 50, 1, MAX_LIMIT),
                    columns=columns)


def matches(row: Mapping[str, Any], query: RunQuery) -> bool:
    if query.status and row["phase"] not in query.status:
        return False
    if query.tuning_job is not None and row.get("tuning_job") != query.tuning_job:
        return False
    labels = row.get("labels") or {}
    for key, value in query.labels:
        if key not in labels or (value is not None and labels[key] != value):
            return False
    if query.text:
        haystack = row.get("search")
        if haystack is None:
            haystack = search_text(row)
        if query.text not in haystack:
            return False
    return True


def search_text(row: Mapping[str, Any]) -> str:
    """What free-text search looks in: name, image, labels, hyperparameters, message."""
    parts = [row["name"], row.get("image") or "", row.get("message") or "",
             *(f"{k}={v}" for k, v in (row.get("labels") or {}).items()),
             *(f"{k}={v}" for k, v in (row.get("hyperparameters") or {}).items())]
    return "\n".join(parts).lower()


def cell(row: Mapping[str, Any], column: str) -> Any:
    if column.startswith("hp:"):
        return (row.get("hyperparameters") or {}).get(column[3:])
    if column.startswith("metric:"):
        value = (row.get("metrics") or {}).get(column[7:])
        return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
    return row.get(column)


def _sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers (and numeric strings, as hyperparameters are) before other text."""
    if isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    text = str(value)
    try:
        number = float(text)
        if math.isfinite(number):
            return (0, number, "")
    except ValueError:
        pass
    return (1, 0.0, text)


def select(rows: Iterable[Mapping[str, Any]], query: RunQuery) -> tuple[int, list[Mapping[str, Any]]]:
    """(total matching, the page of rows) — rows without the sort column go
    last whatever the order, so 'best first' never starts with blanks."""
    chosen = [r for r in rows if matches(r, query)]
    present = [r for r in chosen if cell(r, query.sort) is not None]
    absent = [r for r in chosen if cell(r, query.sort) is None]
    present.sort(key=lambda r: (_sort_key(cell(r, query.sort)), r["name"]), reverse=query.descending)
    absent.sort(key=lambda r: r["name"])
    ordered = present + absent
    return len(ordered), ordered[query.offset:query.offset + query.limit]


def select_sorted(ordered: Sequence[Mapping[str, Any]], query: RunQuery) -> tuple[int, list[Mapping[str, Any]]]:
    """As select, on rows already in the query's order (see api: one sort per index version)."""
    if not (query.status or query.labels or query.tuning_job is not None or query.text):
        return len(ordered), list(ordered[query.offset:query.offset + query.limit])
    chosen = [r for r in ordered if matches(r, query)]
    return len(chosen), chosen[query.offset:query.offset + query.limit]


FIXED_FIELDS = ("name", "namespace", "phase", "start_time", "end_time", "tuning_job", "trial", "message")


def project(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The fields every table row needs, plus only the chosen columns."""
    out = {k: row.get(k) for k in FIXED_FIELDS}
    out["cells"] = [cell(row, c) for c in columns]
    return out


def column_catalog(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Every hyperparameter and metric name seen, for the column chooser."""
    hps: set[str] = set()
    metrics: set[str] = set()
    labels: set[str] = set()
    tuning: set[str] = set()
    for row in rows:
        hps.update(row.get("hyperparameters") or ())
        metrics.update(row.get("metrics") or ())
        labels.update(f"{k}={v}" for k, v in (row.get("labels") or {}).items() if not k.startswith("trainforge.dev/"))
        if row.get("tuning_job"):
            tuning.add(row["tuning_job"])
    return {"base": list(BASE_COLUMNS), "hyperparameters": sorted(hps), "metrics": sorted(metrics),
            "labels": sorted(labels)[:500], "tuning_jobs": sorted(tuning)}
