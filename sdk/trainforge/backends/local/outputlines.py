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
    splitter = LineSplitter(cap, universal)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.end()


class LineSplitter:
    """``bounded_lines`` fed chunk by chunk: one per stream where several
    streams arrive interleaved (a container's stdout and stderr frames), so a
    line of one is never cut by a chunk of the other."""

    def __init__(self, cap: int = LINE_CAP, universal: bool = False):
        self.cap = cap
        self.universal = universal
        self.separator = _UNIVERSAL if universal else _NEWLINE
        self.mark = TRUNCATED_MARK.format(cap=cap)
        self.pending = b""
        self.dropping = False  # inside a line already cut: skip to its end

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        cap, universal, mark = self.cap, self.universal, self.mark
        lines: list[str] = []
        pending = self.pending + chunk
        start = 0
        while True:
            match = self.separator.search(pending, start)
            if match is None:
                break
            if universal and match.group() == b"\r" and match.end() == len(pending):
                break  # maybe the first half of \r\n: decide with the next chunk
            if self.dropping:
                self.dropping = False
            elif match.start() - start > cap:  # a whole long line within one chunk
                lines.append(_decode(_cut(pending[start:match.start()], cap), False) + mark)
            else:
                lines.append(_decode(pending[start:match.start()], not universal))
            start = match.end()
        pending = pending[start:]
        if self.dropping:
            pending = pending[-1:] if pending.endswith(b"\r") else b""
        elif len(pending) > cap:
            lines.append(_decode(_cut(pending, cap), False) + mark)
            self.dropping = True
            pending = pending[-1:] if universal and pending.endswith(b"\r") else b""
        self.pending = pending
        return lines

    def end(self) -> list[str]:
        """The last line, if the stream ended without a newline."""
        pending, self.pending = self.pending, b""
        if not pending or self.dropping:
            return []
        text = _decode(pending, not self.universal)
        return [text.rstrip("\r") if self.universal else text]
