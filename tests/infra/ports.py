"""Free loopback ports for servers started by the tests."""

from __future__ import annotations

import socket


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now.

    All sockets are held open until every port is picked, so one call never
    returns the same port twice. Another process may still grab a port before
    the server binds it; servers fail loudly then, and the window is small.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]
