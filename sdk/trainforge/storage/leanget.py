"""A lean GET for small objects: the request signed with botocore's own SigV4
signer and sent on the client's own connection pool (so its proxies, TLS
settings and timeouts apply), without botocore's per-request pipeline of
parameter validation, serialisation, event hooks and response parsing.

That pipeline is ~1-2 ms of CPU per GET, which is the limit for many small
files on a few cores (bench/s3_bench.py). Only the success path is lean: any
answer other than 200, and any failure to connect, returns None and the
caller takes the full boto3 path, which maps the error (or retries) as always.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

_HEADERS = {"x-amz-checksum-mode": "ENABLED"}


class LeanGet:
    """Signed GETs of whole objects through ``client``'s endpoint (path-style only)."""

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

    def open(self, bucket: str, key: str) -> Any | None:
        """The response of a GET of ``bucket/key`` (``.status_code``, ``.headers``,
        ``.raw`` to stream and release), or None where the full path should run."""
        request = AWSRequest(method="GET", url=f"{self._base}/{quote(bucket)}/{quote(key, safe='/~')}",
                             headers=dict(_HEADERS), stream_output=True)
        try:
            S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            response = self._http.send(request.prepare())
        except Exception:  # noqa: BLE001 (any failure: the full path runs and reports it)
            return None
        if response.status_code != 200:
            response.raw.release_conn()
            return None
        return response


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
