"""Trainer output as lines, read in bounded chunks: memory stays bounded
whatever the trainer prints.

A line longer than ``LINE_CAP`` bytes (1 MiB) is cut: its first ``LINE_CAP``
bytes are kept, ``TRUNCATED_MARK`` is appended, and the rest of that line is
dropped up to its newline. So a 60 MiB line without a newline costs the reader
about ``LINE_CAP`` plus one read chunk, never the whole line (several copies of
it, as a ``readline`` + decode + strip did). Pure logic over an iterable of
byte chunks; the launchers supply the chunks (a pipe, a log stream).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

LINE_CAP = 1024 * 1024
READ_CHUNK = 64 * 1024
TRUNCATED_MARK = " [trainforge: line longer than {cap} bytes; the rest of it was dropped]"

_UNIVERSAL = re.compile(rb"\r\n|\r|\n")
_NEWLINE = re.compile(rb"\n")


def _decode(raw: bytes, strip_cr: bool) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\r") if strip_cr else text


def _cut(raw: bytes, cap: int) -> bytes:
    """The first ``cap`` bytes, backed off to a UTF-8 character boundary."""
    end = cap
    while end > 0 and end > cap - 4 and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return raw[:end]


def bounded_lines(chunks: Iterable[bytes], cap: int = LINE_CAP, universal: bool = False) -> Iterator[str]:
    """Split a byte stream into text lines of at most ``cap`` bytes each (plus
    the truncation mark). ``universal``: ``\\r\\n``, ``\\r`` and ``\\n`` all end
    a line (progress bars redraw with ``\\r``), as Python's text pipes did;
    otherwise only ``\\n`` does and a trailing ``\\r`` is stripped."""
    separator = _UNIVERSAL if universal else _NEWLINE
    mark = TRUNCATED_MARK.format(cap=cap)
    pending = b""
    dropping = False  # inside a line already cut: skip to its end
    for chunk in chunks:
        if not chunk:
            continue
        pending += chunk
        start = 0
        while True:
            match = separator.search(pending, start)
            if match is None:
                break
            if universal and match.group() == b"\r" and match.end() == len(pending):
                break  # maybe the first half of \r\n: decide with the next chunk
            if dropping:
                dropping = False
            elif match.start() - start > cap:  # a whole long line within one chunk
                yield _decode(_cut(pending[start:match.start()], cap), False) + mark
            else:
                yield _decode(pending[start:match.start()], not universal)
            start = match.end()
        pending = pending[start:]
        if dropping:
            pending = pending[-1:] if pending.endswith(b"\r") else b""
        elif len(pending) > cap:
            yield _decode(_cut(pending, cap), False) + mark
            dropping = True
            pending = pending[-1:] if universal and pending.endswith(b"\r") else b""
    if pending and not dropping:
        text = _decode(pending, not universal)
        yield text.rstrip("\r") if universal else text
