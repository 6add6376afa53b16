"""trainforge.storage.crc: the whole file's CRC32 from pieces written at offsets."""

from __future__ import annotations

import os
import random
import zlib

from trainforge.storage import crc as crc_module
from trainforge.storage.crc import PieceCRC, crc32, crc32_combine


def test_the_fast_crc_is_zlibs_crc32_on_every_buffer_kind_and_seed() -> None:
    """Objects stored with zlib's CRC32 (older clients, mc's checksums) must
    verify: ISA-L's CRC has to be the same function, continued from any seed."""
    assert crc_module._fast_crc32 is not zlib.crc32, "isal is a dependency: the fast CRC should be installed"
    data = bytearray(os.urandom(1 << 20) + b"tail")
    for view in (bytes(data), data, memoryview(data)[3:-5], b""):
        for seed in (0, 1, 0xFFFFFFFF, zlib.crc32(b"seed")):
            assert crc32(view, seed) == zlib.crc32(view, seed)


def test_combine_matches_zlib_on_any_split() -> None:
    data = os.urandom(70_001)
    for cut in (0, 1, 7, 4096, 65_536, 70_000, 70_001):
        a, b = data[:cut], data[cut:]
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(data)


def test_parts_streamed_out_of_order_give_the_files_crc() -> None:
    """Like s3transfer: parts of 16 KiB in any order, each streamed in 4 KiB pieces."""
    data = os.urandom(100_000)
    part, piece = 16_384, 4096
    starts = list(range(0, len(data), part))
    random.Random(7).shuffle(starts)
    crc = PieceCRC()
    for start in starts:
        for offset in range(start, min(start + part, len(data)), piece):
            crc.add(offset, data[offset:min(offset + piece, start + part, len(data))])
    assert crc.value(len(data)) == zlib.crc32(data)
    assert crc.value(len(data) + 1) is None  # the file is not all there


def test_a_part_retried_from_its_start_counts_once_with_its_new_bytes() -> None:
    data = bytearray(os.urandom(48))
    crc = PieceCRC()
    crc.add(0, data[:16])
    crc.add(32, data[32:48])
    crc.add(16, b"\0" * 8)  # the middle part's first attempt dies after one piece
    crc.add(16, data[16:24])  # and is fetched again from its start, in the same pieces
    crc.add(24, data[24:32])
    assert crc.value(48) == zlib.crc32(bytes(data))


def test_overlapping_or_missing_pieces_give_no_answer() -> None:
    data = os.urandom(64)
    gap = PieceCRC()
    gap.add(0, data[:16])
    gap.add(32, data[32:])
    assert gap.value(64) is None
    overlap = PieceCRC()
    overlap.add(0, data[:40])
    overlap.add(32, data[32:])  # pieces cut differently: bytes 32..40 twice
    assert overlap.value(64) is None
    assert PieceCRC().value(0) == zlib.crc32(b"")


def test_a_large_files_crc_from_parallel_spans_is_zlibs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from trainforge.storage import files

    monkeypatch.setattr(files, "CRC_SPAN", 64 * 1024)  # many spans from a small file
    data = os.urandom(5 * 64 * 1024 + 321)
    (tmp_path / "f.bin").write_bytes(data)
    assert files.crc32_file(str(tmp_path / "f.bin")) == zlib.crc32(data)
