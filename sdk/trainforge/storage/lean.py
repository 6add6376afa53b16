"""Lean GET and PUT for small objects: the request signed with botocore's own SigV4
signer and sent on the client's own connection pool (so its proxies, TLS
settings and timeouts apply), without botocore's per-request pipeline of
parameter validation, serialisation, event hooks and response parsing.

That pipeline is ~1-2 ms of CPU per request, which is the limit for many small
files on a few cores (bench/s3_bench.py). Only the success path is lean: any
answer other than 200, and any failure to connect, returns None and the
caller takes the full boto3 path, which maps the error (or retries) as always.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

_HEADERS = {"x-amz-checksum-mode": "ENABLED"}


class LeanRequests:
    """Signed GETs and PUTs of whole objects through ``client``'s endpoint (path-style only)."""

    def __init__(self, client: Any):
        meta = client.meta
        config_s3 = getattr(meta.config, "s3", None) or {}
        # Private botocore attributes: without them (another botocore) this path is off.
        self._credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
        self._http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._base = str(meta.endpoint_url).rstrip("/")
        self._region = meta.region_name or "us-east-1"
        self.usable = (self._credentials is not None and self._http is not None
                       and config_s3.get("addressing_style") == "path"
                       and self._base.startswith(("http://", "https://")))

    def _send(self, method: str, bucket: str, key: str, headers: dict[str, str],
              body: bytes | None = None) -> Any | None:
        request = AWSRequest(method=method, url=f"{self._base}/{quote(bucket)}/{quote(key, safe='/~')}",
                             headers=headers, data=body, stream_output=True)
        try:
            S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            response = self._http.send(request.prepare())
        except Exception:  # noqa: BLE001 (any failure: the full path runs and reports it)
            return None
        if response.status_code != 200:
            response.raw.release_conn()
            return None
        return response

    def open(self, bucket: str, key: str) -> Any | None:
        """The response of a GET of ``bucket/key`` (``.status_code``, ``.headers``,
        ``.raw`` to stream and release), or None where the full path should run."""
        return self._send("GET", bucket, key, dict(_HEADERS))

    def put(self, bucket: str, key: str, body: bytes, crc_b64: str, crc_hex: str) -> bool:
        """PUT ``body`` as ``bucket/key`` carrying its CRC32 (the server refuses
        other bytes) and our metadata; False where the full path should run."""
        response = self._send("PUT", bucket, key, {
            "Content-Length": str(len(body)), "x-amz-checksum-crc32": crc_b64,
            "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-meta-tf-crc32": crc_hex}, body)
        if response is None:
            return False
        try:
            with contextlib.suppress(Exception):  # the answer was 200: the object is stored
                response.raw.read()
        finally:
            response.raw.release_conn()
        return True


def head_fields(headers: Any) -> dict[str, Any]:
    """The fields ``s3.expected_crc`` reads, from a GET's raw headers."""
    fields: dict[str, Any] = {}
    crc = headers.get("x-amz-meta-tf-crc32")
    if crc:
        fields["Metadata"] = {"tf-crc32": crc}
    if headers.get("x-amz-checksum-crc32"):
        fields["ChecksumCRC32"] = headers["x-amz-checksum-crc32"]
        fields["ChecksumType"] = headers.get("x-amz-checksum-type", "FULL_OBJECT")
    return fields
