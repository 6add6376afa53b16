"""Lean GET, PUT and LIST: the request signed with botocore's own SigV4
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
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus
from xml.etree import ElementTree

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

_HEADERS = {"x-amz-checksum-mode": "ENABLED"}
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class ListPage:
    objects: list[tuple[str, int, str | None]]  # key, size, ETag (quotes kept)
    next_token: str | None  # None: the last page


def parse_list_page(body: bytes) -> ListPage:
    """A ListObjectsV2 answer. Keys are URL-decoded only where the server says
    it encoded them (as botocore does: a server that ignored encoding-type sent
    them as they are). ValueError for an answer that is not a listing."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != f"{_S3}ListBucketResult":
        raise ValueError(f"not a ListBucketResult: {root.tag}")
    encoded = root.findtext(f"{_S3}EncodingType") == "url"
    objects = []
    for item in root.iter(f"{_S3}Contents"):
        key, size = item.findtext(f"{_S3}Key"), item.findtext(f"{_S3}Size")
        if key is None or size is None:
            raise ValueError("a listed object without Key or Size")
        objects.append((unquote_plus(key) if encoded else key, int(size), item.findtext(f"{_S3}ETag")))
    truncated = root.findtext(f"{_S3}IsTruncated") == "true"
    token = root.findtext(f"{_S3}NextContinuationToken") if truncated else None
    if truncated and not token:
        raise ValueError("a truncated listing without NextContinuationToken")
    return ListPage(objects, token)


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
              body: bytes | None = None, expect: int = 200, query: str = "") -> Any | None:
        url = f"{self._base}/{quote(bucket)}" + (f"/{quote(key, safe='/~')}" if key else "")
        request = AWSRequest(method=method, url=url + (f"?{query}" if query else ""),
                             headers=headers, data=body, stream_output=True)
        try:
            S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            response = self._http.send(request.prepare())
        except Exception:  # noqa: BLE001 (any failure: the full path runs and reports it)
            return None
        if response.status_code != expect:
            response.raw.release_conn()
            return None
        return response

    def open(self, bucket: str, key: str) -> Any | None:
        """The response of a GET of ``bucket/key`` (``.status_code``, ``.headers``,
        ``.raw`` to stream and release), or None where the full path should run."""
        return self._send("GET", bucket, key, dict(_HEADERS))

    def open_range(self, bucket: str, key: str, first: int, last: int, etag: str | None) -> Any | None:
        """The body (``.readinto``, ``.release_conn``) of bytes [first, last] of
        ``bucket/key`` as it is while its ETag is ``etag``, or None where the
        full path should run (anything but a 206 of exactly that range)."""
        headers = {"Range": f"bytes={first}-{last}"}
        if etag:
            headers["If-Match"] = etag
        response = self._send("GET", bucket, key, headers, expect=206)
        if response is None:
            return None
        if response.headers.get("content-length") != str(last - first + 1):
            response.raw.close()
            response.raw.release_conn()
            return None
        return response.raw

    def list_page(self, bucket: str, prefix: str, token: str | None) -> ListPage | None:
        """One page (up to 1,000 keys) of ListObjectsV2 under ``prefix``, parsed
        here (botocore's parser and its date parsing of every LastModified cost
        more than the request: 1.6 s of CPU per 10,000 keys); None where the full
        path should run (an error answer, an answer that is not a listing)."""
        query = {"list-type": "2", "encoding-type": "url", "prefix": prefix}
        if token is not None:
            query["continuation-token"] = token
        response = self._send("GET", bucket, "", {}, query="&".join(
            f"{name}={quote(value, safe='-_.~')}" for name, value in sorted(query.items())))
        if response is None:
            return None
        try:
            return parse_list_page(response.raw.read())
        except Exception:  # noqa: BLE001 (not a listing we understand: the full path reports it)
            return None
        finally:
            response.raw.release_conn()

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
