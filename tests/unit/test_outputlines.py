"""bounded_lines: trainer output split into lines with a cap on line length."""

from __future__ import annotations

import pytest
from trainforge.backends.local.outputlines import TRUNCATED_MARK, LineSplitter, bounded_lines


def split(data: bytes, size: int, **kw: object) -> list[str]:
    return list(bounded_lines((data[i:i + size] for i in range(0, len(data), size)), **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize(("data", "universal", "expected"), [
    (b"a\nb\n", False, ["a", "b"]),
    (b"a\nb", False, ["a", "b"]),
    (b"a\r\nb\r\n", False, ["a", "b"]),
    (b"a\rb\n", False, ["a\rb"]),
    (b"a\r\nb\rc\nd\r", True, ["a", "b", "c", "d"]),
    (b"\n\n", True, ["", ""]),
    (b"caf\xc3\xa9\n\xff\n", False, ["caf\u00e9", "\ufffd"]),
])
def test_lines_whatever_the_chunking(data: bytes, universal: bool, expected: list[str], size: int) -> None:
    assert split(data, size, universal=universal) == expected


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize("size", [1, 3, 4, 64])
def test_a_long_line_is_cut_with_a_mark_and_the_next_line_survives(universal: bool, size: int) -> None:
    mark = TRUNCATED_MARK.format(cap=8)
    data = b"short\n" + b"x" * 50 + b"\nafter\n" + b"y" * 9
    assert split(data, size, cap=8, universal=universal) == ["short", "xxxxxxxx" + mark, "after", "yyyyyyyy" + mark]


def test_a_cut_never_splits_a_utf8_character() -> None:
    mark = TRUNCATED_MARK.format(cap=8)
    assert split("aaaaaaa\u00e9\u00e9\n".encode(), 3, cap=8) == ["aaaaaaa" + mark]


def test_a_cut_line_ending_in_cr_lf_across_chunks() -> None:
    mark = TRUNCATED_MARK.format(cap=4)
    assert list(bounded_lines([b"abcdefg\r", b"\nnext\n"], cap=4, universal=True)) == ["abcd" + mark, "next"]


def test_two_streams_fed_interleaved_keep_their_lines_whole() -> None:
    """A container's stdout and stderr frames, one splitter each: a stderr
    frame in the middle of a stdout line does not cut it."""
    out, err = LineSplitter(cap=16), LineSplitter(cap=16)
    seen = out.feed(b"line 1\nline") + err.feed(b"oops\n") + out.feed(b" 2\nlast") + err.feed(b"x" * 20)
    assert seen == ["line 1", "oops", "line 2", "x" * 16 + TRUNCATED_MARK.format(cap=16)]
    assert out.end() == ["last"] and err.end() == []
