"""A large object downloaded as parallel ranged GETs, each thread writing its
own range of the file with ``os.pwrite`` and folding its own CRC32.

s3transfer (the boto3 way) reads the parts on many threads but writes every
256 KiB piece from one I/O thread through a queue; with a CRC32 per piece on
that thread too, the 1 GiB download measured 0.48-0.69x plain boto3 and 0.25x
``mc`` (bench/s3_bench.py). Here nothing is serialised: a part's bytes go from
its socket to its range of the file on the thread that read them (``pwrite``
and the CRC32 release the GIL), and the whole object's CRC32 is combined
from the parts' (``crc.PieceCRC``) without reading the file back.

Only the success path lives here, as for the lean small-object requests: a
range the server does not answer with 206, or a stream that breaks, ends the
attempt (``None``) and the caller falls back to s3transfer, which retries and
names the error. A write error (disk full) is raised as WriteFailed (falling
back would only fail again), and whatever ``advance`` raises (a stop) as it
is. Pure of any S3 detail: ``open_range`` does the request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO

from .crc import PieceCRC, crc32
from .lean import discard
from .parallel_parts import Abandoned, PartPool

# A part's bytes are read and written this much at a time: each step is one
# socket read, one CRC32 and one pwrite, and a stop is noticed between steps.
STEP = 1024 * 1024

# open_range(first, last) -> a readable stream of bytes [first, last], or None.
OpenRange = Callable[[int, int], "BinaryIO | None"]


class WriteFailed(Exception):
    """Writing the file failed with ``error``."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def download_ranges(open_range: OpenRange, fd: int, size: int, part_size: int, threads: int,
                    advance: Callable[[int], None]) -> int | None:
    """Fetch bytes [0, size) into ``fd`` (a file of at least that size) in
    ``part_size`` ranges on ``threads`` threads; the CRC32 of the whole, or None
    when a range could not be fetched (progress already rewound: the caller
    starts again another way). ``advance`` is told every step's bytes and may
    raise to stop the download (the exception propagates)."""
    pieces = PieceCRC()
    pool: PartPool[int, int] = PartPool(advance)

    def fetch(first: int) -> int | None:
        length = min(part_size, size - first)
        stream = open_range(first, first + length - 1)
        if stream is None:
            raise Abandoned
        readinto = _fastest_readinto(stream)
        buffer = memoryview(bytearray(min(STEP, length)))
        crc = done = 0
        try:
            while done < length:
                if pool.abandon.is_set():
                    return None
                try:
                    got = readinto(buffer[:min(STEP, length - done)])
                except Exception as exc:  # noqa: BLE001 (the stream broke, however it says so)
                    raise Abandoned from exc
                if not got:
                    raise Abandoned  # cut short
                chunk = buffer[:got]
                crc = crc32(chunk, crc)
                try:
                    _write_all(fd, chunk, first + done)
                except OSError as exc:
                    raise WriteFailed(exc) from exc
                done += got
                pool.moved(got)
        finally:
            _finish(stream, whole=done == length)
        pieces.add_crc(first, length, crc)
        return first

    if pool.run(fetch, range(0, size, part_size), threads, "trainforge-range") is None:
        return None
    return pieces.value(size)


def _fastest_readinto(stream: Any) -> Callable[[memoryview], int]:
    """``readinto`` of the body, from the socket straight into our buffer
    where it can: urllib3's own copies every read twice (http.client's read()
    into new bytes, then those into the buffer), which measured about half the
    CPU of a 1 GiB download. Below urllib3 is http.client's response
    (``_fp``), whose readinto is exactly that; used only for a body that is
    not content-encoded (nothing to decode), else urllib3's."""
    plain = getattr(stream, "_fp", None)
    headers = getattr(stream, "headers", None) or {}
    if plain is not None and callable(getattr(plain, "readinto", None)) and not headers.get("content-encoding"):
        return plain.readinto  # type: ignore[no-any-return]
    return stream.readinto  # type: ignore[no-any-return]


def _finish(stream: Any, whole: bool) -> None:
    """Give a read-out connection back to the pool; drop one with bytes left unread."""
    if not whole:
        discard(stream)
        return
    try:
        stream.release_conn()
    except Exception:  # noqa: BLE001 (a connection we are done with, either way)
        pass
