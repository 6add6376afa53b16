"""A large file uploaded as parallel parts: each thread reads its own part of
the file with ``os.preadv`` into its own buffer, folds the part's CRC32 and
sends it as one lean UploadPart (lean.py), the CRC32 in its header.

s3transfer (the boto3 way) reads every part into new bytes and botocore then
computes each part's CRC32 with zlib (0.5 s/GiB here, on top of the whole
file's CRC32 that our metadata needs before the upload starts); with ISA-L's
CRC32 and no copy the 1 GiB upload costs about 1 s less CPU
(bench/s3_bench.py). The parts' CRCs also check the whole file's: a file that
changed after its CRC32 was taken is caught before the upload is completed.

Only the success path lives here, as for the ranged downloads: a part the
server does not answer with 200 and an ETag, or a file shorter than it was,
ends the attempt (``None``, progress taken back; the caller aborts the upload
and s3transfer sends the file, which retries and names the error). A read
error is raised as ReadFailed, and whatever ``advance`` raises (a stop) as it
is. Pure of any S3 detail: ``send_part`` does the request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .crc import crc32, crc32_concat
from .parallel_parts import Abandoned, PartPool

# send_part(part number, its bytes, their CRC32) -> the part's ETag, or None.
SendPart = Callable[[int, memoryview, int], "str | None"]


@dataclass(frozen=True)
class Part:
    number: int  # 1-based, as S3 counts
    etag: str
    crc: int
    length: int


class ReadFailed(Exception):
    """Reading the file failed with ``error``."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def whole_crc(parts: list[Part]) -> int:
    """The CRC32 of the file the parts tile, in part order."""
    return crc32_concat((p.length, p.crc) for p in sorted(parts, key=lambda p: p.number))


def _read_exactly(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` from ``offset``; False where the file ends first."""
    while view:
        try:
            got = os.preadv(fd, [view], offset)
        except OSError as exc:
            raise ReadFailed(exc) from exc
        if not got:
            return False
        view, offset = view[got:], offset + got
    return True


def upload_parts(send_part: SendPart, fd: int, size: int, part_size: int, threads: int,
                 advance: Callable[[int], None]) -> list[Part] | None:
    """Send bytes [0, size) of ``fd`` as ``part_size`` parts on ``threads``
    threads; the parts sent, or None when one could not be (progress already
    rewound: the caller starts again another way). ``advance`` is told each
    part's bytes once it is stored and may raise to stop (the exception
    propagates)."""
    buffers = threading.local()  # one part-sized buffer per thread, reused
    pool: PartPool[int, Part] = PartPool(advance)

    def send(number: int) -> Part:
        first = (number - 1) * part_size
        length = min(part_size, size - first)
        buffer = getattr(buffers, "view", None)
        if buffer is None or len(buffer) < length:
            buffer = buffers.view = memoryview(bytearray(length))
        body = buffer[:length]
        if not _read_exactly(fd, body, first):
            raise Abandoned  # the file is shorter than it was
        crc = crc32(body)
        etag = send_part(number, body, crc)
        if etag is None:
            raise Abandoned
        pool.moved(length)
        return Part(number, etag, crc, length)

    count = max(1, -(-size // part_size))
    return pool.run(send, range(1, count + 1), min(threads, count), "trainforge-part")
