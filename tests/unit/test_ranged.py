"""trainforge.storage.ranged: parallel ranged reads written in place.

The ranges here are served from memory by a small stream class (the module
takes any ``open_range``); the same code against the real MinIO is in
tests/integration/test_storage_s3.py."""

from __future__ import annotations

import io
import os
import threading
import zlib
from pathlib import Path

import pytest
from trainforge.storage.ranged import STEP, WriteFailed, download_ranges


class Body(io.BytesIO):
    """A range's body; ``cut`` bytes in, it ends early (the server hung up)."""

    def __init__(self, data: bytes, cut: int | None = None, log: list[str] | None = None):
        super().__init__(data if cut is None else data[:cut])
        self.log = log if log is not None else []

    def release_conn(self) -> None:
        self.log.append("released" if not self.closed else "dropped")


class Served:
    def __init__(self, data: bytes, cut_at: dict[int, int] | None = None, refuse: set[int] | None = None):
        self.data, self.cut_at, self.refuse = data, cut_at or {}, refuse or set()
        self.asked: list[tuple[int, int]] = []
        self.connections: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, first: int, last: int) -> Body | None:
        with self.lock:
            self.asked.append((first, last))
        if first in self.refuse:
            return None
        return Body(self.data[first:last + 1], self.cut_at.get(first), self.connections)


class Progress:
    def __init__(self, stop_after: int | None = None):
        self.total, self.stop_after, self.lock = 0, stop_after, threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.total += n
            if self.stop_after is not None and self.total >= self.stop_after:
                raise KeyboardInterrupt("stop")


def fetch_into(path: Path, served: Served, size: int, part: int, progress: Progress | None = None,
               threads: int = 4) -> int | None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        return download_ranges(served, fh.fileno(), size, part, threads, progress or Progress())


@pytest.mark.parametrize("size,part", [(1, 5), (10 * STEP + 3, 3 * STEP), (4 * STEP, STEP), (5, 5)])
def test_the_ranges_tile_the_object_and_give_its_crc(tmp_path: Path, size: int, part: int) -> None:
    data = os.urandom(size)
    served, progress = Served(data), Progress()
    crc = fetch_into(tmp_path / "f", served, size, part, progress)
    assert (tmp_path / "f").read_bytes() == data
    assert crc == zlib.crc32(data)
    assert progress.total == size
    assert sorted(served.asked) == [(s, min(s + part, size) - 1) for s in range(0, size, part)]
    assert served.connections == ["released"] * len(served.asked)  # read out: back to the pool


def test_a_range_cut_short_abandons_the_attempt_and_rewinds_progress(tmp_path: Path) -> None:
    data = os.urandom(6 * STEP)
    served, progress = Served(data, cut_at={2 * STEP: STEP + 7}), Progress()
    assert fetch_into(tmp_path / "f", served, len(data), 2 * STEP, progress) is None
    assert progress.total == 0
    assert "dropped" in served.connections  # bytes left unread: never reused


def test_a_refused_range_abandons_the_attempt(tmp_path: Path) -> None:
    data = os.urandom(3 * STEP)
    served, progress = Served(data, refuse={STEP}), Progress()
    assert fetch_into(tmp_path / "f", served, len(data), STEP, progress) is None
    assert progress.total == 0


def test_a_write_error_is_raised_not_retried(tmp_path: Path) -> None:
    data = os.urandom(2 * STEP)
    (tmp_path / "f").write_bytes(b"")
    with open(tmp_path / "f", "rb") as read_only, pytest.raises(WriteFailed) as failed:
        download_ranges(Served(data), read_only.fileno(), len(data), STEP, 2, Progress())
    assert isinstance(failed.value.error, OSError)


def test_a_stop_from_progress_propagates_and_ends_every_range(tmp_path: Path) -> None:
    data = os.urandom(16 * STEP)
    served = Served(data)
    with pytest.raises(KeyboardInterrupt):
        fetch_into(tmp_path / "f", served, len(data), 4 * STEP, Progress(stop_after=3 * STEP), threads=2)
    assert len(served.asked) == 2  # no range can end before the stop: the later ones were never asked for
    assert served.connections.count("dropped") >= 1  # the stopped range's connection holds unread bytes


class Layered(Body):
    """A urllib3-like response: ``_fp`` (http.client's) under it gives the raw
    bytes, the outer layer the decoded ones."""

    def __init__(self, outer: bytes, under: bytes, encoding: str | None):
        super().__init__(outer)
        self._fp = io.BytesIO(under)
        self.headers = {"content-encoding": encoding} if encoding else {}


@pytest.mark.parametrize("encoding,expected", [(None, b"R" * 10), ("gzip", b"D" * 10)], ids=["plain", "encoded"])
def test_the_raw_body_is_read_directly_only_when_nothing_needs_decoding(
        tmp_path: Path, encoding: str | None, expected: bytes) -> None:
    def open_range(first: int, last: int) -> Layered:
        return Layered(b"D" * 10, b"R" * 10, encoding)

    with open(tmp_path / "f", "wb") as fh:
        fh.truncate(10)
        download_ranges(open_range, fh.fileno(), 10, 10, 1, Progress())
    assert (tmp_path / "f").read_bytes() == expected


def test_the_file_is_reserved_whole_before_ranges_are_written(tmp_path: Path) -> None:
    """reserve(): the file is its final size with its blocks allocated (so
    threads writing at offsets do not allocate under the inode's lock, and a
    full disk fails before the download, not midway)."""
    from trainforge.storage.files import reserve

    with open(tmp_path / "f", "wb") as fh:
        reserve(fh.fileno(), 3 * STEP + 5)
        info = os.fstat(fh.fileno())
    assert info.st_size == 3 * STEP + 5
    assert info.st_blocks * 512 >= 3 * STEP + 5  # allocated, not sparse (ext4, xfs, tmpfs all allocate)
