"""trainforge.storage.wire: the lean requests' HTTP/1.1 over plain sockets.

A scripted server on loopback answers each request with exactly the bytes a
test gives it (well-formed or not); the same client against the real MinIO
runs in tests/integration/test_storage_s3.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from trainforge.storage.wire import WirePool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello"


class Scripted:
    """Answers the n-th request it reads with ``answer(n, body)``; None hangs up without answering."""

    def __init__(self, answer: Callable[[int, bytes], bytes | None]):
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer_all(conn)
        except OSError:
            pass  # the client dropped the socket mid-answer, as a test may want it to

    def _answer_all(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = reader.read(length)
                with self.lock:
                    self.requests.append(head + body)
                    n = len(self.requests)
                answer = self.answer(n, body)
                if answer is None:
                    return
                conn.sendall(answer)
                if b"Connection: close" in answer or answer.endswith(b"CUT"):
                    return


@pytest.fixture
def pool_for() -> Iterator[Callable[[Scripted], WirePool]]:
    pools: list[WirePool] = []

    def make(server: Scripted) -> WirePool:
        pools.append(WirePool("127.0.0.1", server.port, connect_timeout=2, read_timeout=2, max_idle=4))
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


def get(pool: WirePool, body: bytes | None = None) -> tuple[int, dict[str, str], bytes] | None:
    response = pool.request("PUT" if body else "GET", "/b/k", {"host": "x", "Content-Length": str(len(body or b""))},
                            body)
    if response is None:
        return None
    data = response.read()
    response.release_conn()
    return response.status, response.headers, data


def test_answers_are_read_by_their_length_and_the_socket_is_kept_alive(pool_for: Callable[[Scripted], WirePool]) -> None:
    server = Scripted(lambda n, body: OK)
    pool = pool_for(server)
    for _ in range(3):
        assert get(pool, b"payload") == (200, {"content-length": "5", "etag": '"e"'}, b"hello")
    assert server.connections == 1
    assert server.requests[0].startswith(b"PUT /b/k HTTP/1.1\r\nhost: x\r\nContent-Length: 7\r\n\r\npayload")


def test_an_answer_saying_connection_close_is_not_reused(pool_for: Callable[[Scripted], WirePool]) -> None:
    server = Scripted(lambda n, body: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    pool = pool_for(server)
    assert get(pool) == (200, {"content-length": "2", "connection": "close"}, b"ok")
    assert get(pool) is not None
    assert server.connections == 2


def test_a_kept_alive_socket_the_server_closed_is_replaced_once(pool_for: Callable[[Scripted], WirePool]) -> None:
    server = Scripted(lambda n, body: OK if n != 2 else None)  # the 2nd request: hung up on, unanswered
    pool = pool_for(server)
    assert get(pool) is not None
    assert get(pool) == (200, {"content-length": "5", "etag": '"e"'}, b"hello")  # sent again on a new socket
    assert server.connections == 2 and len(server.requests) == 3


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nETag: x\r\n\r\n",  # no Content-Length
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n folded: line\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 20_000 + b"\r\nContent-Length: 0\r\n\r\n",
    b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
], ids=["chunked", "no-length", "folded", "two-lengths", "negative-length", "101-headers", "long-line",
        "not-http", "bad-status"])
def test_an_answer_outside_what_it_handles_is_none_and_the_socket_dropped(
        pool_for: Callable[[Scripted], WirePool], answer: bytes) -> None:
    server = Scripted(lambda n, body: answer if n == 1 else OK)
    pool = pool_for(server)
    assert get(pool) is None
    assert get(pool) is not None
    assert server.connections == 2  # the socket of the answer not understood was not used again


def test_a_body_cut_short_reads_what_came_and_is_not_reused(pool_for: Callable[[Scripted], WirePool]) -> None:
    server = Scripted(lambda n, body: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalfCUT" if n == 1 else OK)
    pool = pool_for(server)
    response = pool.request("GET", "/b/k", {"host": "x"})
    assert response is not None
    buffer = bytearray(64)
    got = response.readinto(buffer)
    got += response.readinto(memoryview(buffer)[got:])
    assert bytes(buffer[:got]) == b"halfCUT" and response.readinto(buffer) == 0
    response.release_conn()
    assert get(pool) is not None and server.connections == 2


def test_a_header_with_a_line_break_is_never_sent(pool_for: Callable[[Scripted], WirePool]) -> None:
    server = Scripted(lambda n, body: OK)
    pool = pool_for(server)
    assert pool.request("GET", "/b/k", {"host": "x", "x-amz-meta-a": "1\r\nx-injected: 2"}) is None
    assert server.requests == []


def test_a_refused_connection_is_none() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections to it are refused
        assert get(WirePool("127.0.0.1", port, connect_timeout=2, read_timeout=2, max_idle=4)) is None


def test_a_put_answered_with_more_than_an_acknowledgement_counts_and_drops_the_socket(
        pool_for: Callable[[Scripted], WirePool]) -> None:
    """S3 answers a PUT with an empty body; one that sends 1 MiB is not read to
    its end (a hostile endpoint cannot make the client buffer it) and its
    socket is not kept for the next request."""
    from trainforge.config import S3Settings
    from trainforge.storage.lean import LeanRequests
    from trainforge.storage.s3client import make_client

    big = b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 1048576
    server = Scripted(lambda n, body: big if n == 1 else OK)
    client = make_client(S3Settings(endpoint_url=f"http://127.0.0.1:{server.port}", access_key_id="a",
                                    secret_access_key="b"))
    lean = LeanRequests(client)
    try:
        assert lean.put("bucket", "k", b"data", "AAAAAA==", "00000000")
        assert lean.put("bucket", "k", b"data", "AAAAAA==", "00000000")
        assert server.connections == 2
    finally:
        lean.close()
