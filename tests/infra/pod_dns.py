"""The one cluster-DNS record kind the test bed needs: a pod of a headless
Service, ``<hostname>.<subdomain>.<namespace>.svc.<domain>`` -> that pod's IP,
read from the API at each query. The real node's kubelet points pods at it
(``clusterDNS``), so multi-host jobs rendezvous by name as they would with
CoreDNS. Everything else is answered NXDOMAIN (no upstream: pods have no route
out anyway). A/IN over UDP on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

DOMAIN = "cluster.local"


def parse_question(packet: bytes) -> tuple[int, str, int, int, int] | None:
    """(id, name, qtype, qclass, end of question) of a one-question query."""
    if len(packet) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(packet) and packet[i] != 0:
        length = packet[i]
        if length > 63 or i + 1 + length > len(packet):
            return None
        labels.append(packet[i + 1:i + 1 + length].decode("ascii", errors="replace"))
        i += 1 + length
    if i + 5 > len(packet):
        return None
    qtype, qclass = struct.unpack("!HH", packet[i + 1:i + 5])
    return ident, ".".join(labels).lower(), qtype, qclass, i + 5


def answer(packet: bytes, address: str | None) -> bytes:
    """The response to ``packet``: NXDOMAIN for an unknown name; for a known one
    its A record, or no record (NOERROR) when another type was asked (AAAA)."""
    question = parse_question(packet)
    assert question is not None
    ident, _name, qtype, _qclass, end = question
    found = address is not None and qtype == 1
    rcode = 0 if address is not None else 3
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if found else 0, 0, 0)
    body = packet[12:end]
    if found:
        assert address is not None
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(address)
    return header + body


def pod_name_parts(name: str, domain: str = DOMAIN) -> tuple[str, str, str] | None:
    """(hostname, subdomain, namespace) of ``h.s.ns.svc.<domain>``, else None."""
    suffix = f".svc.{domain}"
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class PodDns:
    """Serves on 127.0.0.1:``port`` in a thread until ``stop``."""

    def __init__(self, api_client: Any, port: int = 53):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="pod-dns")
        self.thread.start()

    def lookup(self, name: str) -> str | None:
        parts = pod_name_parts(name)
        if parts is None:
            return None
        hostname, subdomain, namespace = parts
        for pod in self.core.list_namespaced_pod(namespace).items:
            if pod.spec.hostname == hostname and pod.spec.subdomain == subdomain and pod.status.pod_ip:
                return str(pod.status.pod_ip)
        return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self.sock.recvfrom(512)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            question = parse_question(packet)
            if question is None:
                continue
            try:
                address = self.lookup(question[1]) if question[2] in (1, 28) else None
                self.sock.sendto(answer(packet, address), peer)
            except Exception:  # noqa: BLE001 - a bad query must not end the server
                continue

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(timeout=5)
