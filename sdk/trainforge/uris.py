"""Parsing of the URIs a spec may name. Pure: no I/O.

Three schemes, one shape (bucket + key):

- ``s3://bucket/key``      any S3-compatible store (MinIO, AWS, ...), through boto3
- ``local://bucket/key``   the embedded object store: a directory on this machine
- ``file:///abs/path``     a plain local directory or file (bucket is empty)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("s3", "local", "file")
# scheme://userinfo@ : everything up to the last "@" before the host's end.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#]*@")
# S3 bucket naming rules (lowercase, 3-63, no leading/trailing dot or dash).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class StorageURI:
    scheme: str
    bucket: str
    key: str  # never starts with "/"; a trailing "/" means "a prefix"

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file:///{self.key}"
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> "StorageURI":
        key = self.key
        for part in parts:
            part = part.strip("/")
            if not part:
                continue
            key = f"{key.rstrip('/')}/{part}" if key else part
        return StorageURI(self.scheme, self.bucket, key)

    def as_prefix(self) -> "StorageURI":
        key = self.key if (not self.key or self.key.endswith("/")) else self.key + "/"
        return StorageURI(self.scheme, self.bucket, key)


def parse_uri(text: str) -> StorageURI:
    """Parse and check a storage URI; raise ValueError saying what was expected."""
    if not isinstance(text, str) or not text:
        raise ValueError("expected a storage URI (s3://bucket/key, local://bucket/key or file:///path)")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"expected an s3://, local:// or file:// URI, got {text!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"storage URI {text!r} must not carry a query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URI {text!r} must be absolute: file:///path")
        if not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(f"file URI {text!r} must name an absolute path below /")
        return StorageURI("file", "", parts.path.lstrip("/"))
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"bucket {bucket!r} in {text!r} is not a valid bucket name "
            "(3-63 characters: lowercase letters, digits, '.', '-')"
        )
    key = parts.path.lstrip("/")
    if any(seg in (".", "..") for seg in key.split("/")):
        raise ValueError(f"key in {text!r} must not contain '.' or '..' segments")
    return StorageURI(scheme, bucket, key)


def redact_userinfo(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden:
    ``http://user:secret@host:9000`` -> ``http://***@host:9000``. Endpoints reach
    error messages, status and logs; a secret in one must not."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text
