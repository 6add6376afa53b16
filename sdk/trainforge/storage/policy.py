"""The session policy that scopes one job's storage credentials. Pure: no I/O.

``session_policy(read, write)`` allows reading the ``read`` prefixes and
reading and writing the ``write`` prefixes, nothing else: GetObject on the
keys below each prefix, ListBucket only with an ``s3:prefix`` condition that
keeps listings inside them, PutObject (multipart included) below the write
prefixes. A URI without a trailing ``/`` also names the object of that key
and the keys below ``key/`` (what ``key_matches`` reads), never ``key-other``.
Only ``s3://`` URIs can be scoped; the others are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..uris import StorageURI, parse_uri

VERSION = "2012-10-17"
READ_ACTIONS = ["s3:GetObject"]
WRITE_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def _keys(uri: StorageURI) -> list[str]:
    """The key patterns a URI names: ``p/*`` for a prefix ``p/``; ``k`` and
    ``k/*`` for a key that may be an object or a folder; ``*`` for a bucket."""
    if not uri.key:
        return ["*"]
    if uri.key.endswith("/"):
        return [f"{uri.key}*"]
    return [uri.key, f"{uri.key}/*"]


def _uris(items: Iterable[str | StorageURI]) -> list[StorageURI]:
    out = []
    for item in items:
        uri = parse_uri(item) if isinstance(item, str) else item
        if uri.scheme == "s3" and uri not in out:
            out.append(uri)
    return out


def session_policy(read: Iterable[str | StorageURI], write: Iterable[str | StorageURI]) -> dict[str, Any]:
    readable, writable = _uris(read), _uris(write)
    statements: list[dict[str, Any]] = []
    objects = sorted({f"arn:aws:s3:::{u.bucket}/{k}" for u in readable + writable for k in _keys(u)})
    if objects:
        statements.append({"Effect": "Allow", "Action": READ_ACTIONS, "Resource": objects})
    listings: dict[str, set[str]] = {}
    for u in readable + writable:
        listings.setdefault(u.bucket, set()).update(_keys(u))
    for bucket, prefixes in sorted(listings.items()):
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"],
                           "Resource": [f"arn:aws:s3:::{bucket}"],
                           "Condition": {"StringLike": {"s3:prefix": sorted(prefixes)}}})
    targets = sorted({f"arn:aws:s3:::{u.bucket}/{k}" for u in writable for k in _keys(u)})
    if targets:
        statements.append({"Effect": "Allow", "Action": WRITE_ACTIONS, "Resource": targets})
    return {"Version": VERSION, "Statement": statements}


def policy_text(policy: dict[str, Any]) -> str:
    """Compact JSON: stores limit a session policy's size (MinIO and AWS: 2048)."""
    return json.dumps(policy, separators=(",", ":"), sort_keys=True)
