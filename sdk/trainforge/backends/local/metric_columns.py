"""A local job's metric series as columns on disk, so that a chart of a
million points reads arrays instead of parsing a million JSON lines.

    <jobdir>/metric-columns/
        lock              flock: one reader-writer at a time (the supervisor, dashboards)
        state.json        per source file: its identity, bytes consumed, metric names, rows per name
        <source>-<g>-<k>.<column>.f64   the source's k-th metric, one float64 file per
                          column: step (NaN: none), value, time (contiguous: a
                          slice-wise min/max over a million values takes ms)

The sources are the job's two JSON-lines files (records.py): ``scraped``, what
the supervisor's regexes found in the logs, and ``logged``, the trainer's own
``log_metric`` file, opened below the run folder without following a link the
trainer planted (untrusted.py). Both only grow, so an update parses the bytes
appended since the last one (complete lines only: a line still being written
waits for its newline) and appends rows; the supervisor updates every
checkpoint sync and at the job's end, a dashboard before it reads. A source
that shrank, was replaced (another inode) or whose last bytes before the
consumed offset changed is read again from its start. Rows are committed by
state.json (replaced atomically): bytes past a file's committed rows (a writer
killed midway) are cut before the next append. Committed rows are never cut in
place: a rebuild or a compaction writes the files of a new generation, and the
old ones are unlinked once the new state is committed, so a reader's memory map
stays valid. A column file gone or cut short is rebuilt from the sources.

Lines are accepted exactly as MetricRecord.from_json accepts them
(``metrics.record_fields``). Metric names stay data in state.json, never file
names. Bounded: at most MAX_NAMES metrics (names up to MAX_NAME_CHARS) per
source, and MAX_ROWS rows: past that the oldest quarter of each metric's rows is
dropped, so the latest values survive as with ``metrics.MAX_RECORDS``. That cap
(500,000 records) bounds Python objects of ~200 bytes each; a row here is 24
bytes in a file mapped read-only, so 10 million rows (240 MB of disk, of page
cache while read) cost what the list path's 500,000 records do in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from ... import untrusted
from ...metrics import MAX_RECORD_BYTES, record_fields
from .jobdir import JobDir, write_atomically

FOLDER = "metric-columns"
FORMAT = 1
MAX_ROWS = 10_000_000       # per source; past it the oldest quarter of each metric goes
MAX_NAMES = 256             # metrics per source; records of further names are dropped (counted)
MAX_NAME_CHARS = 1024
CHUNK = 8 << 20             # bytes parsed at a time
SIGNATURE = 64              # bytes before the consumed offset compared to tell an append from a rewrite
COLUMNS = ("step", "value", "time")
ROW = len(COLUMNS)
NOSTEP = math.nan


@dataclass(frozen=True)
class MetricColumns:
    """One metric's records in file order (merged sources: by time)."""

    step: np.ndarray   # float64; NaN where a record had no step
    value: np.ndarray  # float64
    time: np.ndarray   # unix seconds

    def __len__(self) -> int:
        return len(self.value)


@dataclass
class SourceState:
    ident: list[int] = field(default_factory=list)  # st_dev, st_ino of the source
    offset: int = 0                                  # bytes consumed (whole lines)
    signature: str = ""                              # hex of the SIGNATURE bytes before offset
    names: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    skipped: int = 0                                 # malformed lines
    dropped: int = 0                                 # records over MAX_NAMES / MAX_ROWS
    generation: int = 0                              # bumped when files are replaced

    @classmethod
    def from_json(cls, data: Any) -> SourceState:
        state = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if len(state.names) != len(state.rows) or any(r < 0 for r in state.rows):
            raise ValueError("names and rows disagree")
        return state


# -- parsing (pure) ---------------------------------------------------------------

def parse_lines(data: bytes, names: list[str], rows: dict[int, array]) -> tuple[int, int]:
    """Append the records of ``data`` (whole JSON lines) to ``rows`` (index of
    the name in ``names`` -> flat step, value, time triples), adding new names
    to ``names``. Returns (malformed lines, records dropped over the caps)."""
    index = {n: i for i, n in enumerate(names)}
    skipped = dropped = 0
    loads = json.loads
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_BYTES:
            skipped += 1
            continue
        try:
            text = line.decode("utf-8", "replace")
            timestamp, name, value, step = record_fields(loads(text), text)
        except (ValueError, RecursionError):
            skipped += 1
            continue
        k = index.get(name)
        if k is None:
            if len(names) >= MAX_NAMES or len(name) > MAX_NAME_CHARS:
                dropped += 1
                continue
            k = index[name] = len(names)
            names.append(name)
        column = rows.get(k)
        if column is None:
            column = rows[k] = array("d")
        column.extend((NOSTEP if step is None else float(step), value, timestamp))
    return skipped, dropped


def merge(scraped: dict[str, MetricColumns], logged: dict[str, MetricColumns]) -> dict[str, MetricColumns]:
    """As records.merge_records: a name the trainer logged itself hides the
    scraped one; each metric's rows by time (stable: file order among equals)."""
    out: dict[str, MetricColumns] = {}
    for name, columns in [*((n, c) for n, c in scraped.items() if n not in logged), *logged.items()]:
        t = columns.time
        if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
            order = np.argsort(t, kind="stable")
            columns = MetricColumns(columns.step[order], columns.value[order], t[order])
        out[name] = columns
    return out


# -- files --------------------------------------------------------------------------

def _file(folder: str, source: str, state: SourceState, k: int, column: str) -> str:
    return os.path.join(folder, f"{source}-{state.generation}-{k}.{column}.f64")


def _open(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    fd = _open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _signature(handle: BinaryIO, offset: int) -> str:
    start = max(0, offset - SIGNATURE)
    handle.seek(start)
    return handle.read(offset - start).hex()


def _generations(folder: str) -> Iterator[tuple[str, str, int]]:
    """(file name, source, generation) of each column file in the folder."""
    for name in os.listdir(folder):
        source, _, rest = name.partition("-")
        generation = rest.partition("-")[0]
        if name.endswith(".f64") and generation.isdigit():
            yield name, source, int(generation)


def _sweep(folder: str, states: dict[str, SourceState]) -> None:
    """Once a state is committed: the files of every other generation go (a
    reader still mapping them keeps them until it lets go)."""
    for name, source, generation in list(_generations(folder)):
        state = states.get(source)
        if state is None or state.generation != generation:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


def _append(folder: str, source: str, state: SourceState, fresh: dict[int, array]) -> None:
    for k, values in fresh.items():
        committed = state.rows[k] if k < len(state.rows) else 0
        rows = np.frombuffer(values, dtype=np.float64).reshape(-1, ROW)
        for c, column in enumerate(COLUMNS):
            _write_at(_file(folder, source, state, k, column), committed * 8, rows[:, c])
    while len(state.rows) < len(state.names):
        state.rows.append(0)
    for k, values in fresh.items():
        state.rows[k] += len(values) // ROW


def _write_at(path: str, offset: int, data: np.ndarray) -> None:
    """``data`` at ``offset`` of ``path``: bytes past it (never committed) are cut first."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT)
    try:
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)  # only bytes no state.json ever committed
        os.lseek(fd, offset, os.SEEK_SET)
        view = memoryview(np.ascontiguousarray(data)).cast("B")
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _compact(folder: str, source: str, state: SourceState, generation: int) -> None:
    """Past MAX_ROWS: keep the newest three quarters of each metric's rows, in
    the files of a new generation (the old ones go once it is committed)."""
    old = SourceState(**{**state.__dict__, "rows": list(state.rows), "names": list(state.names)})
    state.generation = generation
    for k, count in enumerate(old.rows):
        keep = count - count // 4
        for column, data in zip(COLUMNS, _read(folder, source, old, k), strict=True):
            _write_at(_file(folder, source, state, k, column), 0, data[count - keep:])
        state.dropped += count - keep
        state.rows[k] = keep


def _read(folder: str, source: str, state: SourceState, k: int) -> list[np.ndarray]:
    """The committed rows of metric ``k``, a read-only map per column."""
    count = state.rows[k]
    if count == 0:
        return [np.empty(0) for _ in COLUMNS]
    out = []
    for column in COLUMNS:
        fd = _open(_file(folder, source, state, k, column), os.O_RDONLY)
        with open(fd, "rb") as handle:
            out.append(np.memmap(handle, dtype=np.float64, mode="r", shape=(count,)))
    return out


def _consume(handle: BinaryIO, state: SourceState, size: int, budget: int | None) -> dict[int, array]:
    """Parse the source from ``state.offset`` to its last complete line, or
    about ``budget`` bytes of it."""
    fresh: dict[int, array] = {}
    position = state.offset
    if budget is not None:
        size = min(size, position + max(budget, CHUNK))
    while position < size:
        handle.seek(position)
        data = handle.read(min(CHUNK, size - position))
        if not data:
            break
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < CHUNK:
                break  # a line still being written: read once it has its newline
            position += len(data)  # a line longer than a chunk: malformed, passed over
            state.skipped += 1
            continue
        skipped, dropped = parse_lines(data[:end], state.names, fresh)
        state.skipped += skipped
        state.dropped += dropped
        position += end + 1
    state.offset = position
    return fresh


def _update_source(folder: str, source: str, state: SourceState | None, handle: BinaryIO | None,
                   budget: int | None, new_generation: Iterator[int]) -> SourceState | None:
    """The source's state after appending what it gained; new files (a new
    generation, never files a reader may map) when it was replaced or rewritten."""
    if handle is None:
        return None
    st = os.fstat(handle.fileno())
    ident = [st.st_dev, st.st_ino]
    if state is None:
        state = SourceState(ident=ident, generation=next(new_generation))
    elif state.ident != ident or st.st_size < state.offset or _signature(handle, state.offset) != state.signature:
        state = SourceState(ident=ident, generation=next(new_generation))  # replaced or rewritten: start over
    if st.st_size == state.offset:
        return state
    fresh = _consume(handle, state, st.st_size, budget)
    _append(folder, source, state, fresh)
    state.signature = _signature(handle, state.offset)
    if sum(state.rows) > MAX_ROWS:
        _compact(folder, source, state, next(new_generation))
    return state


@contextlib.contextmanager
def _sources(jobdir: JobDir) -> Iterator[dict[str, BinaryIO | None]]:
    """The open source files (None: absent, or not a regular file below a real folder)."""
    with contextlib.ExitStack() as stack:
        handles: dict[str, BinaryIO | None] = {}
        try:
            fd = os.open(jobdir.metrics_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            handles["scraped"] = stack.enter_context(open(fd, "rb"))
        except FileNotFoundError:
            handles["scraped"] = None
        layout = jobdir.layout
        folder, name = os.path.split(os.path.relpath(layout.metrics_file, layout.root))
        try:
            dir_fd = stack.enter_context(untrusted.opened_dir(layout.root, folder))
            handle = untrusted.open_regular(dir_fd, name, layout.metrics_file)
            handles["logged"] = stack.enter_context(handle) if handle is not None else None
        except (FileNotFoundError, untrusted.UnsafePath):
            handles["logged"] = None
        yield handles


def _load_state(path: str) -> dict[str, SourceState]:
    try:
        with open(_open(path, os.O_RDONLY), encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != FORMAT:
            return {}
        return {k: SourceState.from_json(v) for k, v in data["sources"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}  # unreadable state: rebuilt from the sources (the files of a new generation)


def update(jobdir: JobDir, budget: int | None = None) -> dict[str, SourceState]:
    """Bring the columns up to date with the job's metric files (``budget``:
    parse about that many bytes of each at most, the rest next time); the state."""
    folder = str(jobdir.path / FOLDER)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o755)
    with _locked(folder):
        return _update(jobdir, folder, budget)


def _update(jobdir: JobDir, folder: str, budget: int | None = None) -> dict[str, SourceState]:
    path = os.path.join(folder, "state.json")
    before = _load_state(path)
    written = _document(before)  # the states are updated in place
    # Generations past every file here: new files never reuse the name of one
    # a reader may still map (files are never cut below what a state committed).
    used = [g for _, _, g in _generations(folder)] + [s.generation for s in before.values()]
    new_generation = itertools.count(max(used, default=-1) + 1)
    after: dict[str, SourceState] = {}
    with _sources(jobdir) as handles:
        for source, handle in handles.items():
            state = _update_source(folder, source, before.get(source), handle, budget, new_generation)
            if state is not None:
                after[source] = state
    document = _document(after)
    if document != written or not os.path.exists(path):
        write_atomically(jobdir.path / FOLDER / "state.json", document)
    _sweep(folder, after)
    return after


def _document(states: dict[str, SourceState]) -> str:
    return json.dumps({"format": FORMAT, "sources": {k: v.__dict__ for k, v in states.items()}})


def load(jobdir: JobDir) -> dict[str, MetricColumns]:
    """Every metric of the job, up to date, merged as the job's records are
    (records.merge_records). The arrays map the column files read-only."""
    folder = str(jobdir.path / FOLDER)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o755)
    with _locked(folder):
        try:
            per_source = _read_all(folder, _update(jobdir, folder))
        except (FileNotFoundError, ValueError):  # a column file gone or cut short: rebuilt from the sources
            os.unlink(os.path.join(folder, "state.json"))
            per_source = _read_all(folder, _update(jobdir, folder))
    return merge(per_source.get("scraped", {}), per_source.get("logged", {}))


def _read_all(folder: str, states: dict[str, SourceState]) -> dict[str, dict[str, MetricColumns]]:
    per_source: dict[str, dict[str, MetricColumns]] = {}
    for source, state in states.items():
        found = per_source[source] = {}
        for k, name in enumerate(state.names):
            step, value, time = _read(folder, source, state, k)
            found[name] = MetricColumns(step=step, value=value, time=time)
    return per_source
