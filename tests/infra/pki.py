"""Certificates and keys for a throwaway control plane, made with the openssl CLI.

The openssl CLI is on every Debian machine; the Python ``cryptography`` package
is not a dependency of the project, so it is not used here.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Names the apiserver answers to: loopback for the tests, the in-cluster names
# and the first address of the service range for anything that resolves them.
SERVING_SANS = (
    "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes",
    "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path  # CN=admin, O=system:masters: full access under RBAC
    admin_key: Path
    service_account_key: Path  # signs service account tokens
    service_account_pub: Path  # verifies them


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    p = Pki(*(folder / n for n in (
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key",
        "sa.key", "sa.pub",
    )))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-subj", "/CN=trainforge-test-ca", "-keyout", p.ca_key, "-out", p.ca_cert)
    _leaf(p, p.serving_cert, p.serving_key, "/CN=kube-apiserver", [
        "extendedKeyUsage=serverAuth", "subjectAltName=" + ",".join(SERVING_SANS)])
    _leaf(p, p.admin_cert, p.admin_key, "/O=system:masters/CN=admin", [
        "extendedKeyUsage=clientAuth"])
    _openssl("genrsa", "-out", p.service_account_key, "2048")
    _openssl("rsa", "-in", p.service_account_key, "-pubout", "-out", p.service_account_pub)
    return p


def _leaf(p: Pki, cert: Path, key: Path, subject: str, extensions: list[str]) -> None:
    csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
    ext.write_text("\n".join([
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment", *extensions, ""]))
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", p.ca_cert, "-CAkey", p.ca_key,
             "-CAcreateserial", "-days", "365", "-extfile", ext, "-out", cert)


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
