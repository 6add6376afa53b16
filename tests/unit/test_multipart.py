"""trainforge.storage.multipart: a large file sent as parallel parts read in place.

The parts are received here by a small function that stores them in memory
(the module takes any ``send_part``); the same code against the real MinIO is
in tests/integration/test_storage_s3.py."""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pytest
from trainforge.storage.multipart import ReadFailed, upload_parts, whole_crc


class Received:
    """Parts as a server would keep them; ``refuse`` holds part numbers answered with an error."""

    def __init__(self, refuse: set[int] | None = None):
        self.parts: dict[int, bytes] = {}
        self.refuse = refuse or set()
        self.lock = threading.Lock()

    def __call__(self, number: int, body: memoryview, crc: int) -> str | None:
        assert crc == zlib.crc32(body), "a part is sent with the CRC32 of exactly its bytes"
        if number in self.refuse:
            return None
        with self.lock:
            self.parts[number] = bytes(body)  # the buffer is reused: keep a copy, as the socket did
        return f'"etag-{number}"'


class Progress:
    def __init__(self, stop_after: int | None = None):
        self.total, self.stop_after = 0, stop_after
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.total += n
            if self.stop_after is not None and self.total >= self.stop_after:
                raise KeyboardInterrupt("stopped")


def a_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize(("size", "part"), [(10_000, 1000), (10_001, 1000), (999, 1000), (0, 1000), (7, 1)])
def test_the_parts_tile_the_file_and_give_its_crc(tmp_path: Path, size: int, part: int) -> None:
    path, data = a_file(tmp_path, size)
    received, progress = Received(), Progress()
    with open(path, "rb") as handle:
        parts = upload_parts(received, handle.fileno(), size, part, threads=4, advance=progress)
    assert parts is not None
    assert sorted(p.number for p in parts) == list(range(1, len(parts) + 1))
    assert b"".join(received.parts[n] for n in sorted(received.parts)) == data
    assert whole_crc(parts) == zlib.crc32(data)
    assert progress.total == size


def test_a_refused_part_abandons_the_attempt_and_rewinds_progress(tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, 50_000)
    progress = Progress()
    with open(path, "rb") as handle:
        assert upload_parts(Received(refuse={3}), handle.fileno(), 50_000, 4096, 4, progress) is None
    assert progress.total == 0


def test_a_file_shorter_than_it_was_abandons_the_attempt(tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, 10_000)
    with open(path, "rb") as handle:
        assert upload_parts(Received(), handle.fileno(), 20_000, 4096, 2, Progress()) is None


def test_a_read_error_is_raised_not_retried(tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, 10_000)
    fd = os.open(tmp_path, os.O_RDONLY)  # a folder: every read fails with EISDIR
    try:
        with pytest.raises(ReadFailed):
            upload_parts(Received(), fd, 10_000, 4096, 2, Progress())
    finally:
        os.close(fd)


def test_a_stop_from_progress_propagates_and_ends_every_part(tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, 100 * 4096)
    received = Received()
    with open(path, "rb") as handle, pytest.raises(KeyboardInterrupt):
        upload_parts(received, handle.fileno(), 100 * 4096, 4096, 2, Progress(stop_after=3 * 4096))
    assert len(received.parts) < 100  # the parts not yet started were not sent
