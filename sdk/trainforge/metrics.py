"""Metrics of a training run: parsed from log lines by the job's regexes, or
read from the JSON-lines file that ``trainforge.runtime.log_metric`` writes.

Pure logic; pandas and matplotlib are imported only by ``to_frame`` and
``plot_learning_curves``.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from .regex import compile_metric_regex, compile_prefilter

if TYPE_CHECKING:
    import pandas as pd

    from .spec.models import MetricDefinition
    from .storage import ObjectStore

__all__ = [
    "MetricParser", "MetricRecord", "final_values", "parse_records", "plot_learning_curves", "read_records",
    "read_stored_records", "record_fields", "to_frame",
]

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

MAX_LINE_CHARS = 64 * 1024
"""A log line (each carriage-return piece of it) is searched in its first 64 Ki
characters only: a metric printed after that on one line is not seen."""
MAX_RECORD_BYTES = 64 * 1024
"""A metrics.jsonl line longer than this is skipped as malformed."""
MAX_RECORDS = 500_000
"""At most this many records are held from one metrics file (the last ones)."""
MAX_METRICS_BYTES = 64 * 1024 * 1024
"""What is read of a stored metrics object: its last 64 MiB (``read_tail``)."""
_WARN_LINES = 5


@dataclass(frozen=True)
class MetricRecord:
    """One observation of one metric."""

    timestamp: float  # unix seconds
    name: str
    value: float
    step: int | None = None

    def to_json(self) -> str:
        """One line of strict JSON (NaN/inf as ``null`` plus ``"nonfinite"``), the
        format ``trainforge.runtime.log_metric`` writes."""
        record: dict[str, Any] = {"timestamp": self.timestamp, "name": self.name,
                                  "value": self.value if math.isfinite(self.value) else None,
                                  "step": self.step}
        if not math.isfinite(self.value):
            record["nonfinite"] = "nan" if math.isnan(self.value) else ("inf" if self.value > 0 else "-inf")
        return json.dumps(record, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> MetricRecord:
        """Parse one line; ValueError says what is wrong with it."""
        return cls(*record_fields(json.loads(text), text))


def record_fields(data: Any, text: str = "") -> tuple[float, str, float, int | None]:
    """(timestamp, name, value, step) of one parsed metrics.jsonl line (``text``,
    quoted in errors); ValueError says what is wrong with it. Shared by
    MetricRecord.from_json and the columnar cache, so both accept the same lines."""
    if not isinstance(data, dict):
        raise ValueError("a metric record must be a JSON object")
    name, value, timestamp, step = data.get("name"), data.get("value"), data.get("timestamp"), data.get("step")
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric record has no name: {text.strip()!r}")
    if value is None and data.get("nonfinite") in _NONFINITE:
        value = _NONFINITE[data["nonfinite"]]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"metric {name!r}: value must be a number, got {value!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ValueError(f"metric {name!r}: timestamp must be a number, got {timestamp!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError(f"metric {name!r}: step must be an integer or null, got {step!r}")
    return float(timestamp), name, float(value), step


def _name_and_regex(definition: Any) -> tuple[str, str]:
    if isinstance(definition, Mapping):
        return str(definition["name"]), str(definition["regex"])
    return str(definition.name), str(definition.regex)


class MetricParser:
    """Applies the job's metric regexes to log lines.

    Each regex has exactly one capture group, read as a float; a capture that is
    not a number is ignored. A line may carry several metrics, and a line with
    carriage returns (progress bars) counts as its pieces. ``step`` is the
    running count of records per metric: 1 for the first match, 2 for the next.

    Bounded: the regexes are RE2 (``trainforge.regex``: time linear in the
    text, whatever the pattern) and only the first ``MAX_LINE_CHARS`` of each
    piece are searched, so one line costs at most patterns x 64 Ki characters
    of matching however long it is or however the regex is written.
    """

    def __init__(self, definitions: Iterable[MetricDefinition | Mapping[str, str]]):
        self._patterns: list[tuple[str, Any]] = []
        regexes: list[str] = []
        for definition in definitions:
            name, regex = _name_and_regex(definition)
            try:
                compiled = compile_metric_regex(regex)
            except ValueError as exc:
                raise ValueError(f"metric {name!r}: regex {regex!r}: {exc}") from None
            self._patterns.append((name, compiled))
            regexes.append(regex)
        self._any = compile_prefilter(regexes)
        self._counts: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._patterns]

    def feed(self, line: str, timestamp: float) -> list[MetricRecord]:
        """The records found in one log line (seen at ``timestamp``)."""
        records: list[MetricRecord] = []
        if not self._patterns:
            return records
        for piece in line.rstrip("\r\n").split("\r"):
            if not piece:
                continue
            piece = piece[:MAX_LINE_CHARS]
            if self._any is not None and self._any.search(piece) is None:
                continue  # most lines carry no metric: one search, not one per regex
            for name, pattern in self._patterns:
                match = pattern.search(piece)
                if match is None or match.group(1) is None:
                    continue
                try:
                    value = float(match.group(1))
                except ValueError:
                    continue
                step = self._counts.get(name, 0) + 1
                self._counts[name] = step
                records.append(MetricRecord(timestamp=timestamp, name=name, value=value, step=step))
        return records


def read_records(path: str | os.PathLike[str], max_records: int | None = None) -> list[MetricRecord]:
    """The records of a JSON-lines metrics file, in file order, read as a stream.

    A torn last line (the writer was killed mid-line, or is still writing) is
    skipped quietly; a malformed line elsewhere, or one longer than
    ``MAX_RECORD_BYTES``, is skipped with a warning naming the file and line
    number (the first few; then a count). Past ``max_records`` only the last
    ``max_records`` are kept, so memory stays bounded whatever the file's size
    and the latest values survive. A missing file raises FileNotFoundError."""
    with open(path, "rb") as f:
        return read_record_stream(f, str(path), max_records)


def read_record_stream(stream: BinaryIO, source: str, max_records: int | None = None) -> list[MetricRecord]:
    """The records of an open JSON-lines stream, as read_records."""
    return _collect(_lines(stream), source, max_records)


def parse_records(text: str | bytes, source: str = "metrics", max_records: int | None = None,
                  partial_first_line: bool = False) -> list[MetricRecord]:
    """The records of JSON-lines text (a metrics file or object), as read_records.
    ``partial_first_line``: the text is the tail of a longer object (see
    ``ObjectStore.read_tail``), whose first line is cut and skipped quietly."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    lines = _lines(io.BytesIO(data))
    if partial_first_line:
        next(lines, None)
    return _collect(lines, source, max_records)


def read_stored_records(store: ObjectStore, uri: str, max_bytes: int | None = None,
                        max_records: int | None = None) -> list[MetricRecord]:
    """The records of a metrics object in the store, from its last ``max_bytes``
    only (a ranged read): a trainer cannot make its reader hold a huge file."""
    max_bytes = MAX_METRICS_BYTES if max_bytes is None else max_bytes
    data, size = store.read_tail(uri, max_bytes)
    if size > len(data):
        warnings.warn(f"{uri}: {size} bytes, over the cap of {max_bytes}: read its end only", stacklevel=2)
    return parse_records(data, source=uri, max_records=max_records, partial_first_line=size > len(data))


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes | None, bool]]:
    """(line, complete) for each line of ``stream``; line None for one longer
    than MAX_RECORD_BYTES, which is read past without being held."""
    while True:
        line = stream.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_RECORD_BYTES)
            yield None, True
            continue
        yield line, line.endswith(b"\n")


def _collect(lines: Iterable[tuple[bytes | None, bool]], source: str, max_records: int | None) -> list[MetricRecord]:
    max_records = MAX_RECORDS if max_records is None else max_records
    kept: deque[MetricRecord] = deque(maxlen=max(max_records, 0))
    seen = skipped = 0
    for number, (line, complete) in enumerate(lines, start=1):
        try:
            if line is None:
                raise ValueError(f"line longer than {MAX_RECORD_BYTES} bytes")
            text = line.decode("utf-8", "replace")
            if not text.strip():
                continue
            kept.append(MetricRecord.from_json(text))
            seen += 1
        except (ValueError, RecursionError) as exc:  # RecursionError: json nested too deep
            if not complete:  # a torn last line: its writer has not finished it
                continue
            skipped += 1
            if skipped <= _WARN_LINES:
                warnings.warn(f"{source}:{number}: skipping a malformed metric record: {exc}", stacklevel=3)
    if skipped > _WARN_LINES:
        warnings.warn(f"{source}: skipped {skipped - _WARN_LINES} more malformed metric records", stacklevel=3)
    if seen > len(kept):
        warnings.warn(f"{source}: {seen} metric records, over the cap of {max_records}: kept the last "
                      f"{len(kept)}", stacklevel=3)
    return list(kept)


def final_values(records: Iterable[MetricRecord]) -> dict[str, float]:
    """The last finite value of each metric, in the order names first appear.

    Non-finite values (a loss that diverged to NaN) are skipped: they cannot be
    carried in a JSON status, and a metric that was never finite is absent."""
    finals: dict[str, float] = {}
    for record in records:
        if math.isfinite(record.value):
            finals[record.name] = record.value
    return finals


def to_frame(records: Iterable[MetricRecord]) -> pd.DataFrame:
    """A DataFrame with columns timestamp (datetime64, UTC), name, value, step (nullable Int64)."""
    import pandas as pd

    rows = list(records)
    return pd.DataFrame({
        "timestamp": pd.to_datetime(pd.Series([r.timestamp for r in rows], dtype="float64"), unit="s", utc=True),
        "name": pd.Series([r.name for r in rows], dtype="object"),
        "value": pd.Series([r.value for r in rows], dtype="float64"),
        "step": pd.Series([r.step for r in rows], dtype="Int64"),
    })


def plot_learning_curves(
    records: Iterable[MetricRecord],
    path: str | os.PathLike[str],
    *,
    x: Literal["auto", "step", "time"] = "auto",
    title: str | None = None,
) -> Path:
    """Write a PNG with one subplot per metric. ``x="auto"`` plots against the
    step when every record of that metric has one, else against seconds since
    the first record. Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in ("auto", "step", "time"):
        raise ValueError(f"x must be 'auto', 'step' or 'time', got {x!r}")
    rows = list(records)
    if not rows:
        raise ValueError("no metric records to plot")
    start = min(r.timestamp for r in rows)
    by_name: dict[str, list[MetricRecord]] = {}
    for record in rows:
        by_name.setdefault(record.name, []).append(record)

    figure = Figure(figsize=(6.0, 2.6 * len(by_name)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(by_name), 1, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, by_name.items()):
        points: list[tuple[float, float]]
        use_step = x == "step" or (x == "auto" and all(r.step is not None for r in series))
        if use_step:
            # x="step" with records that carry none: their position in the series
            points = sorted((float(r.step if r.step is not None else i + 1), r.value) for i, r in enumerate(series))
            ax.set_xlabel("step")
        else:
            points = sorted((r.timestamp - start, r.value) for r in series)
            ax.set_xlabel("seconds")
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=100)
    return out
