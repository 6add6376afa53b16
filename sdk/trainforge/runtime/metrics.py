"""Structured metrics: ``log_metric`` appends one JSON line per call.

Each line is ``{"timestamp": <unix seconds>, "name": str, "value": float | null,
"step": int | null}``, written with a single ``write`` on a file opened for
append, so lines from threads, data-loader workers or several ranks never
interleave. A NaN or infinite value is kept as an event but written as
``"value": null`` plus ``"nonfinite": "nan" | "inf" | "-inf"`` (the file stays
strict JSON; ``trainforge.metrics.MetricRecord`` reads it back as the float).

The file is TRAINFORGE_METRICS_FILE, else ``<output dir>/metrics.jsonl``. With no
contract tree (a trainer run by hand), the metric is printed instead.
"""

from __future__ import annotations

import json
import math
import operator
import os
import sys
import threading
import time
from typing import Any

from ._files import writable_target
from .environment import current

_lock = threading.Lock()
_warned = False
_json_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise ValueError(f"metric name must be a non-empty string without whitespace, got {name!r}")
    return name


def _check_value(name: str, value: Any) -> float:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"metric {name!r}: value must be a number, got the string {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r}: value must be a number, got {type(value).__name__}") from None


def _check_step(name: str, step: Any) -> int | None:
    if step is None:
        return None
    try:
        return operator.index(step)
    except TypeError:
        raise TypeError(f"metric {name!r}: step must be an integer or None, got {step!r}") from None


def metric_line(name: str, value: Any, step: Any = None, timestamp: float | None = None) -> str:
    """The JSON line ``log_metric`` writes (without the newline)."""
    name = _check_name(name)
    number = _check_value(name, value)
    record: dict[str, Any] = {
        "timestamp": time.time() if timestamp is None else float(timestamp),
        "name": name,
        "value": number if math.isfinite(number) else None,
        "step": _check_step(name, step),
    }
    if not math.isfinite(number):
        record["nonfinite"] = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
        return json.dumps(record, allow_nan=False)
    # What json.dumps writes for this record, without its general machinery
    # (a third of a call's time; bench/trainer_overhead.py).
    step_text = "null" if record["step"] is None else str(record["step"])
    return (f'{{"timestamp": {record["timestamp"]!r}, "name": {_json_string(name)}, '
            f'"value": {number!r}, "step": {step_text}}}')


def log_metric(name: str, value: Any, step: int | None = None) -> None:
    """Record metric ``name`` = ``value`` (at ``step``, e.g. the epoch).

    Thread-safe and flushed per line. Raises ValueError/TypeError for a bad name,
    value or step; never fails the training because the file cannot be written
    (it warns once on stderr and prints the metric instead)."""
    global _warned
    line = metric_line(name, value, step)
    env = current()
    path = env.metrics_file
    data = (line + "\n").encode("utf-8")
    with _lock:
        try:  # the usual case: the folder is there (then writable_target says yes too)
            fd = os.open(path, _APPEND, 0o644)
        except OSError:
            fd = -1  # missing folder, no contract tree, or unwritable: the careful way below
        if fd >= 0:
            try:
                os.write(fd, data)
                return
            except OSError:
                pass  # a full disk: warned about below
            finally:
                os.close(fd)
        if writable_target(path, env.root):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                return
            except OSError as exc:
                if not _warned:
                    _warned = True
                    print(f"trainforge: cannot write metrics to {path}: {exc}; printing them instead",
                          file=sys.stderr, flush=True)
        shown = "" if step is None else f" step={step}"
        print(f"metric {name}={float(value)!r}{shown}", flush=True)
