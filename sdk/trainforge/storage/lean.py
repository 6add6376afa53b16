"""Lean GET, PUT, UploadPart and LIST: each request signed here (sigv4.py) and sent,
over plain HTTP, on our own kept-alive sockets (wire.py, the client's timeouts
and connection limit), over HTTPS on the client's own urllib3 connection pool
(its TLS settings too), without botocore's per-request pipeline of parameter
validation, serialisation, event hooks, its signer and response parsing.

That pipeline is ~1-2 ms of CPU per request, which is the limit for many small
files on a few cores (bench/s3_bench.py); a lean PUT of 100 KiB costs about
0.5 ms on the wire, SHA-256 and signing included (1.4-1.6 ms through urllib3
and http.client). Only the success path is lean: any answer other than the
expected one, and any failure to connect, returns None and the caller takes
the full boto3 path, which maps the error (or retries) as always. With a
proxy configured for the endpoint the lean path is off.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from .sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, sign
from .wire import WirePool

_HEADERS = {"x-amz-checksum-mode": "ENABLED"}
_MAX_ACK = 64 * 1024  # what a PUT's answer body may hold that we read (S3 sends none)
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
    """Signed GETs, PUTs and listings through ``client``'s endpoint (path-style only)."""

    def __init__(self, client: Any):
        meta = client.meta
        config_s3 = getattr(meta.config, "s3", None) or {}
        # Private botocore attributes: without them (another botocore) this path is off.
        self._credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
        self._http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._base = str(meta.endpoint_url).rstrip("/")
        self._region = meta.region_name or "us-east-1"
        parts = urlsplit(self._base)
        self._host, self._root = parts.netloc, parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        self.usable = (self._credentials is not None and self._http is not None
                       and config_s3.get("addressing_style") == "path"
                       and parts.scheme in ("http", "https") and not parts.query
                       and self._connection_pool() is not None)
        # Plain HTTP goes on our own wire (wire.py): a third of urllib3's CPU per request.
        self._wire = WirePool(parts.hostname or "", parts.port or 80, float(meta.config.connect_timeout),
                              float(meta.config.read_timeout), int(meta.config.max_pool_connections)) \
            if self.usable and not self._https else None

    def close(self) -> None:
        """Close the kept-alive sockets of the plain-HTTP wire."""
        if self._wire is not None:
            self._wire.close()

    def _connection_pool(self) -> Any | None:
        """The client's own urllib3 pool for the endpoint (its TLS settings,
        timeouts and connection limit), or None where requests go through a
        proxy (then the lean path is off: botocore's session handles proxies)."""
        with self._pool_lock:
            if self._pool is None or getattr(self._pool, "pool", True) is None:  # a closed pool has no queue
                try:
                    if self._http._proxy_config.proxy_url_for(self._base):
                        return None
                    pool = self._http._manager.connection_from_url(self._base)
                    self._http._setup_ssl_cert(pool, self._base, self._http._verify)
                except Exception:  # noqa: BLE001 (another botocore: the full path only)
                    return None
                self._pool = pool
            return self._pool

    def _send(self, method: str, bucket: str, key: str, headers: dict[str, str],
              body: bytes | memoryview | None = None, expect: int = 200, query: str = "") -> Any | None:
        """The urllib3 response (``.status``, ``.headers``, ``.readinto``,
        ``.release_conn``) if its status is ``expect``, else None."""
        path = f"{self._root}/{quote(bucket)}" + (f"/{quote(key, safe='/~')}" if key else "")
        if body is None:
            payload = EMPTY_SHA256
        else:  # over plain HTTP the body is signed too, as botocore does
            payload = UNSIGNED_PAYLOAD if self._https else hashlib.sha256(body).hexdigest()
        try:
            credentials = self._credentials.get_frozen_credentials()
            signed = sign(method, path, query, {"host": self._host, **headers},
                          access_key=credentials.access_key, secret_key=credentials.secret_key,
                          token=credentials.token, region=self._region, payload_sha256=payload)
            target = path + (f"?{query}" if query else "")
            if self._wire is not None:
                response = self._wire.request(method, target, signed, body)
            else:
                pool = self._connection_pool()
                if pool is None:
                    return None
                response = pool.urlopen(method, target, body=body, headers=signed, retries=False,
                                        assert_same_host=False, preload_content=False, decode_content=False)
        except Exception:  # noqa: BLE001 (any failure: the full path runs and reports it)
            return None
        if response is None:
            return None
        if response.status != expect:
            discard(response)
            return None
        return response

    def open(self, bucket: str, key: str) -> Any | None:
        """The response of a GET of ``bucket/key`` (``.headers``, read it, then
        ``.release_conn()``), or None where the full path should run."""
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
            discard(response)
            return None
        return response

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
            return parse_list_page(response.read())
        except Exception:  # noqa: BLE001 (not a listing we understand: the full path reports it)
            return None
        finally:
            response.release_conn()

    def put(self, bucket: str, key: str, body: bytes, crc_b64: str, crc_hex: str) -> bool:
        """PUT ``body`` as ``bucket/key`` carrying its CRC32 (the server refuses
        other bytes) and our metadata; False where the full path should run."""
        response = self._send("PUT", bucket, key, {
            "Content-Length": str(len(body)), "x-amz-checksum-crc32": crc_b64,
            "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-meta-tf-crc32": crc_hex}, body)
        if response is None:
            return False
        _finish_ack(response)  # the answer was 200: the object is stored
        return True

    def put_part(self, bucket: str, key: str, upload_id: str, number: int, body: memoryview,
                 crc_b64: str) -> str | None:
        """UploadPart ``number`` of ``upload_id`` carrying the part's CRC32 (the
        server refuses other bytes); the part's ETag, or None where the full
        path should run."""
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='-_.~')}"
        response = self._send("PUT", bucket, key, {
            "Content-Length": str(len(body)), "x-amz-checksum-crc32": crc_b64,
            "x-amz-sdk-checksum-algorithm": "CRC32"}, body, query=query)
        if response is None:
            return None
        etag = response.headers.get("etag")
        _finish_ack(response)
        return str(etag) if etag else None


def _finish_ack(response: Any) -> None:
    """Read the (empty) body of a PUT's answer and give the connection back;
    one holding more than an acknowledgement is dropped, never read to its end."""
    try:
        response.read(_MAX_ACK)
        if not response.read(1):
            response.release_conn()
            return
    except Exception:  # noqa: BLE001 (the object is stored either way; the connection is not reused)
        pass
    discard(response)


def discard(response: Any) -> None:
    """Give up a response that may have bytes left unread: its connection is
    closed, not reused (the next request would read those bytes as its answer)."""
    try:
        response.close()
        response.release_conn()
    except Exception:  # noqa: BLE001 (a connection we are done with, either way)
        pass


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
