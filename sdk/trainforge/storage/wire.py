"""A minimal HTTP/1.1 client for the lean requests over plain HTTP: one
request, one answer sized by its Content-Length, on kept-alive sockets.

http.client under urllib3 costs ~1 ms of CPU per request here (the answer's
headers parsed by the email package, urllib3's header bookkeeping); a 100 KiB
PUT measured 1.4-1.6 ms of CPU through them and 0.5 ms here, SHA-256 and
signing included (bench/s3_bench.py shows what that does to 10,000 small
files). Only the success path is kept that small: an answer this does not
understand (no Content-Length, chunked, a folded or overlong header line, too
many headers) or a broken socket ends the request with None and the socket
is dropped, and the caller takes botocore's path, which handles and names
everything. HTTPS endpoints keep urllib3 (certificates and TLS settings).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

MAX_LINE = 16 * 1024  # a status or header line longer than this ends the request
MAX_HEADERS = 100
READ_BUFFER = 64 * 1024


class WireError(Exception):
    """An answer outside what this client handles."""


class Response:
    """One answer: ``status``, ``headers`` (names in lower case), the body
    through ``read``/``readinto`` (never past its Content-Length), then
    ``release_conn`` (the socket kept for the next request only if the whole
    body was read) or ``close`` (dropped)."""

    def __init__(self, pool: WirePool, conn: _Conn, status: int, headers: dict[str, str], length: int,
                 reusable: bool):
        self._pool, self._conn = pool, conn
        self.status, self.headers = status, headers
        self._left, self._reusable = length, reusable
        self._done = False

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0 or self._done:
            return 0
        view = memoryview(buffer).cast("B")
        got = self._conn.reader.readinto(view[:self._left])
        if not got:
            self._reusable = False  # cut short: the caller sees fewer bytes than promised
            return 0
        self._left -= got
        return got

    def read(self, amount: int | None = None) -> bytes:
        if self._done:
            return b""
        want = self._left if amount is None or amount < 0 else min(amount, self._left)
        if want <= 0:
            return b""
        data = self._conn.reader.read(want)
        self._left -= len(data)
        if len(data) < want:
            self._reusable = False
        return data

    def close(self) -> None:
        """Drop the socket (bytes may be left unread)."""
        self._reusable = False
        self.release_conn()

    def release_conn(self) -> None:
        if self._done:
            return
        self._done = True
        if self._reusable and self._left == 0:
            self._pool.give_back(self._conn)
        else:
            self._conn.close()


class _Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=READ_BUFFER)

    def close(self) -> None:
        for closing in (self.reader.close, self.sock.close):
            try:
                closing()
            except OSError:
                pass


class WirePool:
    """Kept-alive connections to one ``host:port``, at most ``max_idle`` kept."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float, max_idle: int):
        self.host, self.port = host, port
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._max_idle = max_idle
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _take(self) -> _Conn | None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours to use
                self._idle, self._pid = [], os.getpid()
            return self._idle.pop() if self._idle else None

    def give_back(self, conn: _Conn) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes | memoryview | None = None) -> Response | None:
        """Send one request; its answer (any status), or None where none came back
        that this client understands. A kept-alive socket the server closed in
        the meantime is replaced once, as urllib3 does. Not for HEAD (its
        answer's Content-Length describes a body that is not sent)."""
        try:
            head = _request_head(method, target, headers)
        except WireError:
            return None
        for attempt in (0, 1):
            conn = self._take()
            reused = conn is not None
            if conn is None:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
                except OSError:
                    return None
                sock.settimeout(self._read_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = _Conn(sock)
            answered = False
            try:
                conn.sock.sendall(head)
                if body:
                    conn.sock.sendall(body)
                status_line = conn.reader.readline(MAX_LINE + 1)
                answered = bool(status_line)
                status, fields, length, reusable = _answer_head(status_line, conn.reader)
            except (OSError, WireError, ValueError):
                conn.close()
                if reused and not answered and attempt == 0:
                    continue  # the server had closed the idle socket: once more on a new one
                return None
            return Response(self, conn, status, fields, length, reusable)
        return None


def _request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        text = f"{name}: {value}"
        if "\r" in text or "\n" in text:
            raise WireError(f"a header with a line break: {name}")
        lines.append(text)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _answer_head(status_line: bytes, reader: Any) -> tuple[int, dict[str, str], int, bool]:
    """(status, headers, body length, reusable) from the status line and the header lines."""
    if len(status_line) > MAX_LINE or not status_line.endswith(b"\r\n"):
        raise WireError("no status line")
    version, _, rest = status_line.decode("latin-1").partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise WireError(f"not HTTP/1.x: {version!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        if line == b"\r\n":
            break
        if len(line) > MAX_LINE or not line.endswith(b"\r\n") or line[:1] in (b" ", b"\t"):
            raise WireError("a header line this client does not take")
        name, colon, value = line[:-2].decode("latin-1").partition(":")
        if not colon:
            raise WireError("a header line without a colon")
        name, value = name.strip().lower(), value.strip()
        if name in headers and name == "content-length" and headers[name] != value:
            raise WireError("two different Content-Lengths")
        headers[name] = value
    else:
        raise WireError(f"more than {MAX_HEADERS} header lines")
    if "transfer-encoding" in headers:
        raise WireError("a chunked answer")
    length_text = headers.get("content-length")
    if length_text is None:
        if status in (204, 304) or 100 <= status < 200:
            length_text = "0"
        else:
            raise WireError("an answer without Content-Length")
    if not length_text.isdigit():
        raise WireError("a Content-Length that is not a number")
    reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return status, headers, int(length_text), reusable
