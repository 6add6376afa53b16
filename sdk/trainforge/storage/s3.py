"""``s3://`` through boto3: any S3-compatible store (MinIO, AWS, ...).

Integrity: every upload carries the CRC32 of the whole file, computed here
before sending, as the S3 full-object checksum (the server refuses bytes that
do not match, multipart included) and as the metadata ``x-amz-meta-tf-crc32``
(so stores that drop checksums still let downloads check). Downloads compare
size and CRC32 (ours, or the object's own full-object CRC32) before the temp
file is renamed into place; on any mismatch they raise IntegrityError naming
the object and leave nothing behind. Files at or above
``multipart_threshold_mb`` go in parallel parts: uploads as lean UploadParts
read in place, each with its CRC32 (``multipart.py``), downloads as ranged
GETs pinned to one version of the object by ETag, each written in place by
its own thread (``ranged.py``); either falls back to s3transfer. Smaller
files take one request each, and listings one request a page, sent by the
lean requests of ``lean.py`` (signed by ``sigv4.py``, sent on our own
kept-alive sockets over plain HTTP (``wire.py``) or the client's urllib3 pool
over HTTPS, without botocore's per-request pipeline), falling back to the
full boto3 call for anything but the expected answer. Every CRC32 is ISA-L's
where installed (``crc.py``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from ..config import Settings
from ..errors import IntegrityError, ObjectNotFound, PreconditionFailed, StorageError
from ..uris import StorageURI, redact_userinfo
from .base import MiB, ObjectInfo, TransferProgress, as_uri, is_prefix, key_matches
from .crc import PieceCRC, crc32
from .files import FdSink, LocalFile, atomic_fd, atomic_path, crc32_file, pump, reserve, write_error
from .lean import LeanRequests, discard, head_fields
from .multipart import ReadFailed, upload_parts, whole_crc
from .ranged import WriteFailed, download_ranges
from .s3client import (
    MAPPED,
    MAX_ATTEMPTS,
    client_for,
    error_code,
    is_not_found,
    map_error,
)
from .transfer import BaseStore

CRC_META = "tf-crc32"
_STREAM_ERRORS = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError)
_DELETE_BATCH = 1000
# Files up to this size are read whole and sent by the lean PUT (lean.py).
LEAN_PUT_MAX = 8 * MiB
# What S3 answers when a conditional write loses: 412, or 409 when two
# conditional writes of one key race on AWS (MinIO answers 412).
_LOST_CONDITION = {"PreconditionFailed", "ConditionalRequestConflict"}


def crc_b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def expected_crc(response: Mapping[str, Any]) -> int | None:
    """The whole-object CRC32 an object carries: our metadata, else S3's own
    full-object CRC32; None when it has neither (size is checked regardless)."""
    ours = (response.get("Metadata") or {}).get(CRC_META)
    if ours:
        with contextlib.suppress(ValueError):
            return int(ours, 16)
    theirs = response.get("ChecksumCRC32")
    if theirs and "-" not in theirs and response.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        with contextlib.suppress(ValueError):
            return int.from_bytes(base64.b64decode(theirs), "big")
    return None


def _verify(uri: StorageURI, size: int, crc: int, want_size: int, want_crc: int | None) -> None:
    if size != want_size:
        raise IntegrityError(f"{uri}: received {size} bytes, the object has {want_size}")
    if want_crc is not None and crc != want_crc:
        raise IntegrityError(f"{uri}: CRC32 of the received bytes is {crc:08x}, "
                             f"the object records {want_crc:08x}")


class _Subscriber(BaseSubscriber):  # type: ignore[misc]
    """Feeds s3transfer progress into ours; hands over size/ETag we already know."""

    def __init__(self, progress: TransferProgress, size: int | None = None, etag: str | None = None):
        self._progress, self._size, self._etag = progress, size, etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        if self._size is not None:
            future.meta.provide_transfer_size(self._size)
        if self._etag and hasattr(future.meta, "provide_object_etag"):
            future.meta.provide_object_etag(self._etag)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._progress.advance(bytes_transferred)


class _PieceFile:
    """The temp file s3transfer writes a download into (seek + write, from its
    one I/O thread), feeding every piece to a PieceCRC on the way."""

    def __init__(self, handle: Any, pieces: PieceCRC):
        self._handle, self._pieces, self._position = handle, pieces, 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = self._handle.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def write(self, data: bytes) -> int:
        self._pieces.add(self._position, data)
        written = self._handle.write(data)
        self._position += written
        return written


class S3Store(BaseStore):
    """An ObjectStore on S3 (see the module docstring)."""

    def __init__(self, settings: Settings, client: Any = None):
        super().__init__(settings)
        s3 = settings.s3
        self.client = client if client is not None else client_for(s3)
        self.endpoint = redact_userinfo(str(self.client.meta.endpoint_url))  # for messages only
        self.multipart_threshold = s3.multipart_threshold_mb * MiB
        self._transfer_config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=s3.multipart_chunk_mb * MiB,
            max_request_concurrency=s3.max_concurrency,
        )
        self._manager: TransferManager | None = None
        self._manager_lock = threading.Lock()
        self._lean = LeanRequests(self.client)

    def __repr__(self) -> str:
        return f"S3Store(endpoint={self.endpoint!r})"

    def close(self) -> None:
        """Stop s3transfer's worker threads (they are started on first large
        transfer) and close the lean requests' kept-alive sockets."""
        self._lean.close()
        with self._manager_lock:
            if self._manager is not None:
                self._manager.shutdown()
                self._manager = None

    def _transfers(self) -> TransferManager:
        with self._manager_lock:
            if self._manager is None:
                self._manager = TransferManager(self.client, self._transfer_config)
            return self._manager

    @contextlib.contextmanager
    def _errors(self, uri: StorageURI, action: str) -> Iterator[None]:
        try:
            yield
        except MAPPED as exc:
            raise map_error(exc, str(uri), self.endpoint, action) from exc

    def _missing(self, uri: StorageURI) -> ObjectNotFound:
        """ObjectNotFound for ``uri``, saying whether the bucket itself is missing
        (a HEAD 404 does not tell)."""
        try:
            self.client.head_bucket(Bucket=uri.bucket)
        except ClientError as exc:
            if is_not_found(exc):
                return ObjectNotFound(f"bucket {uri.bucket!r} does not exist at {self.endpoint} ({uri})")
        except MAPPED:
            pass
        return ObjectNotFound(f"no object at {uri}")

    @contextlib.contextmanager
    def _not_found_is_missing(self, uri: StorageURI) -> Iterator[None]:
        """A 404 becomes ObjectNotFound naming what is missing: the bucket or the object."""
        try:
            yield
        except ClientError as exc:
            if is_not_found(exc):
                raise self._missing(uri) from exc
            raise

    def _head(self, uri: StorageURI) -> dict[str, Any]:
        with self._errors(uri, "read"), self._not_found_is_missing(uri):
            return dict(self.client.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED"))

    # --- reading ------------------------------------------------------------------
    def local_path(self, uri: str | StorageURI) -> str | None:
        return None

    def list(self, prefix_uri: str | StorageURI) -> list[ObjectInfo]:
        u = as_uri(prefix_uri)
        listed = self._list_lean(u) if self._lean.usable else None
        if listed is None:
            with self._errors(u, "list"):
                pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=u.bucket, Prefix=u.key)
                listed = [(item["Key"], int(item["Size"]), item.get("ETag"))
                          for page in pages for item in page.get("Contents", [])]
        found = [ObjectInfo(f"s3://{u.bucket}/{key}", key, size, str(etag or "").strip('"') or None)
                 for key, size, etag in listed if key_matches(u, key)]
        found.sort(key=lambda o: o.key)
        return found

    def _list_lean(self, u: StorageURI) -> list[tuple[str, int, str | None]] | None:
        """Every (key, size, ETag) under the prefix by lean.py's pages, or None
        (from the first page that is not a 200 listing) for the full path."""
        listed: list[tuple[str, int, str | None]] = []
        token: str | None = None
        while True:
            page = self._lean.list_page(u.bucket, u.key, token)
            if page is None:
                return None
            listed.extend(page.objects)
            if page.next_token is None:
                return listed
            token = page.next_token

    def _stat(self, uri: StorageURI) -> ObjectInfo:
        if is_prefix(uri):
            raise ObjectNotFound(f"{uri} names a prefix, not an object (download it with download_prefix)")
        head = self._head(uri)
        etag = str(head.get("ETag", "")).strip('"') or None
        return ObjectInfo(str(uri), uri.key, int(head["ContentLength"]), etag)

    def exists(self, uri: str | StorageURI) -> bool:
        u = as_uri(uri)
        with self._errors(u, "read"):
            try:
                if not is_prefix(u):
                    try:
                        self.client.head_object(Bucket=u.bucket, Key=u.key)
                        return True
                    except ClientError as exc:
                        if not is_not_found(exc):
                            raise
                page = self.client.list_objects_v2(Bucket=u.bucket, Prefix=u.as_prefix().key, MaxKeys=1)
                return bool(page.get("KeyCount") or page.get("Contents"))
            except ClientError as exc:
                if error_code(exc)[0] == "NoSuchBucket":
                    return False
                raise

    def _get_stream(self, uri: StorageURI) -> dict[str, Any]:
        with self._not_found_is_missing(uri):
            return dict(self.client.get_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED"))

    def read_bytes(self, uri: str | StorageURI) -> bytes:
        u = as_uri(uri)
        with self._errors(u, "read"):
            response = self._get_stream(u)
            with contextlib.closing(response["Body"]) as body:
                data = body.read()
        _verify(u, len(data), crc32(data), int(response["ContentLength"]), expected_crc(response))
        return bytes(data)

    def read_tail(self, uri: str | StorageURI, max_bytes: int) -> tuple[bytes, int]:
        """One ranged GET when the object is larger than ``max_bytes``: a huge
        object is never held whole."""
        u = as_uri(uri)
        size = self._stat(u).size
        if size <= max_bytes:
            data = self.read_bytes(u)
            return data, len(data)
        with self._errors(u, "read"), self._not_found_is_missing(u):
            response = self.client.get_object(Bucket=u.bucket, Key=u.key,
                                              Range=f"bytes={size - max_bytes}-{size - 1}")
            with contextlib.closing(response["Body"]) as body:
                data = body.read(max_bytes)
        return bytes(data), size

    def _get(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        if obj.size >= self.multipart_threshold:
            self._get_large(uri, target, progress)
            return
        if self._lean.usable and self._get_lean(uri, target, progress):
            return
        for attempt in range(1, MAX_ATTEMPTS + 1):
            moved = 0

            def advance(n: int) -> None:
                nonlocal moved
                moved += n
                progress.advance(n)

            try:
                with self._errors(uri, "download"):
                    response = self._get_stream(uri)
                    with contextlib.closing(response["Body"]) as body, atomic_fd(target) as fd:
                        size, crc = pump(body, FdSink(fd, target), advance)
                        _verify(uri, size, crc, int(response["ContentLength"]), expected_crc(response))
                return
            except StorageError as exc:
                if not isinstance(exc.__cause__, _STREAM_ERRORS) or attempt == MAX_ATTEMPTS:
                    raise
                progress.advance(-moved)  # the connection dropped mid-body: start this object again

    def _get_lean(self, uri: StorageURI, target: str, progress: TransferProgress) -> bool:
        """One small object through the lean GET (lean.py), checked like the
        full path; False (nothing left behind, progress rewound) where the full
        path should run instead: an error answer, a dropped connection."""
        raw = self._lean.open(uri.bucket, uri.key)
        if raw is None:
            return False
        moved = 0
        length = raw.headers.get("content-length", "")
        if not length.isdigit():
            discard(raw)
            return False

        def advance(n: int) -> None:
            nonlocal moved
            moved += n
            progress.advance(n)

        try:
            with atomic_fd(target) as fd:  # its folder made only if the open finds it missing
                size, crc = pump(raw, FdSink(fd, target), advance)
                if size != int(length):  # cut short: a broken stream, not corrupt bytes
                    raise ConnectionError(f"{uri}: {size} of {length} bytes")
                _verify(uri, size, crc, size, expected_crc(head_fields(raw.headers)))
            return True
        except StorageError:
            raw.close()  # bytes may be left unread: the connection is not reused
            raise  # a write error naming the file, or a checksum mismatch: as the full path
        except Exception:  # noqa: BLE001 (the stream broke: the full path retries and reports)
            raw.close()
            progress.advance(-moved)
            return False
        finally:
            raw.release_conn()

    def _get_large(self, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        head = self._head(uri)
        size, etag = int(head["ContentLength"]), head.get("ETag")
        with atomic_path(target) as tmp:
            got = self._get_ranges(uri, target, tmp, size, etag, progress) if self._lean.usable else None
            if got is None:
                got = self._get_through_s3transfer(uri, target, tmp, size, etag, progress)
            _verify(uri, os.path.getsize(tmp), got, size, expected_crc(head))

    def _get_ranges(self, uri: StorageURI, target: str, tmp: str, size: int, etag: str | None,
                    progress: TransferProgress) -> int | None:
        """Parallel ranged GETs written in place (ranged.py); the file's CRC32,
        or None (the file emptied, progress rewound) where s3transfer should run."""
        try:
            with open(tmp, "xb") as handle:
                reserve(handle.fileno(), size)
                crc = download_ranges(
                    lambda first, last: self._lean.open_range(uri.bucket, uri.key, first, last, etag),
                    handle.fileno(), size, self._transfer_config.multipart_chunksize,
                    self._transfer_config.max_request_concurrency, progress.advance)
                if crc is None:
                    handle.truncate(0)
                return crc
        except WriteFailed as failed:
            raise write_error(target, failed.error) from failed.error
        except OSError as exc:  # the temp file's open or size
            raise write_error(target, exc) from exc

    def _get_through_s3transfer(self, uri: StorageURI, target: str, tmp: str, size: int, etag: str | None,
                                progress: TransferProgress) -> int:
        pieces = PieceCRC()
        with self._errors(uri, "download"):
            try:
                with open(tmp, "r+b" if os.path.exists(tmp) else "xb") as handle:
                    future = self._transfers().download(
                        uri.bucket, uri.key, _PieceFile(handle, pieces),
                        subscribers=[_Subscriber(progress, size, etag)])
                    future.result()
            except OSError as exc:
                raise write_error(target, exc) from exc
        # The CRC32 from the parts as they were written; read the file again
        # only when they do not tile it (a part retried midway).
        got = pieces.value(size)
        return crc32_file(tmp) if got is None else got

    # --- writing ------------------------------------------------------------------
    def _put(self, source: LocalFile, uri: StorageURI, progress: TransferProgress) -> None:
        if self._lean.usable and source.size < min(LEAN_PUT_MAX, self.multipart_threshold) and self._put_lean(source, uri):
            progress.advance(source.size)
            return
        try:
            crc = crc32_file(source.path)
        except OSError as exc:
            raise StorageError(f"cannot read {source.path}: {exc.strerror or exc}") from exc
        extra = {"ChecksumCRC32": crc_b64(crc), "Metadata": {CRC_META: f"{crc:08x}"}}
        with self._errors(uri, "upload to"):
            if source.size < self.multipart_threshold:
                with open(source.path, "rb") as body:
                    self.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=body, **extra)
                progress.advance(source.size)
                return
            if not (self._lean.usable and self._put_parts(source, uri, crc, progress)):
                future = self._transfers().upload(
                    source.path, uri.bucket, uri.key, extra_args=extra, subscribers=[_Subscriber(progress)])
                future.result()
        stored = int(self._head(uri)["ContentLength"])
        if stored != source.size:
            raise IntegrityError(f"{uri}: stored {stored} bytes, {source.path} has {source.size}")

    def _put_parts(self, source: LocalFile, uri: StorageURI, crc: int, progress: TransferProgress) -> bool:
        """A multipart upload whose parts are lean UploadParts read in place
        (multipart.py), completed with the whole file's CRC32 for the server to
        check; False (the upload aborted, progress rewound) where s3transfer
        should send the file. Create and complete are botocore's calls."""
        part_size = ChunksizeAdjuster().adjust_chunksize(self._transfer_config.multipart_chunksize, source.size)
        upload_id = self.client.create_multipart_upload(
            Bucket=uri.bucket, Key=uri.key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT",
            Metadata={CRC_META: f"{crc:08x}"})["UploadId"]
        completed = False
        try:
            try:
                with open(source.path, "rb") as handle:
                    parts = upload_parts(
                        lambda number, body, part_crc: self._lean.put_part(
                            uri.bucket, uri.key, upload_id, number, body, crc_b64(part_crc)),
                        handle.fileno(), source.size, part_size,
                        self._transfer_config.max_request_concurrency, progress.advance)
            except ReadFailed as failed:
                raise StorageError(f"cannot read {source.path}: {failed.error.strerror or failed.error}") from failed
            except OSError as exc:  # the open
                raise StorageError(f"cannot read {source.path}: {exc.strerror or exc}") from exc
            if parts is None:
                return False
            if whole_crc(parts) != crc:
                raise IntegrityError(f"{source.path} changed while it was being uploaded to {uri}; nothing was stored")
            self.client.complete_multipart_upload(
                Bucket=uri.bucket, Key=uri.key, UploadId=upload_id, ChecksumCRC32=crc_b64(crc),
                ChecksumType="FULL_OBJECT", MultipartUpload={"Parts": [
                    {"PartNumber": p.number, "ETag": p.etag, "ChecksumCRC32": crc_b64(p.crc)}
                    for p in sorted(parts, key=lambda p: p.number)]})
            completed = True
            return True
        finally:
            if not completed:
                with contextlib.suppress(Exception):  # best effort: sweep_partial finds what is left
                    self.client.abort_multipart_upload(Bucket=uri.bucket, Key=uri.key, UploadId=upload_id)

    def _put_lean(self, source: LocalFile, uri: StorageURI) -> bool:
        """One small file read once and sent by the lean PUT (lean.py) with the
        CRC32 of exactly the bytes sent; False where the full path should run."""
        try:
            with open(source.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise StorageError(f"cannot read {source.path}: {exc.strerror or exc}") from exc
        if len(data) != source.size:
            return False  # the file changed since it was listed: the full path reads it again
        crc = crc32(data)
        return self._lean.put(uri.bucket, uri.key, data, crc_b64(crc), f"{crc:08x}")

    def write_bytes(self, uri: str | StorageURI, data: bytes) -> None:
        u = as_uri(uri)
        if is_prefix(u):
            raise StorageError(f"cannot write bytes to {u}: it names a prefix, not an object")
        crc = crc32(data)
        with self._errors(u, "write"):
            self.client.put_object(Bucket=u.bucket, Key=u.key, Body=data, ChecksumCRC32=crc_b64(crc),
                                   Metadata={CRC_META: f"{crc:08x}"})

    # --- conditional writes (ConditionalWrites) -------------------------------------
    def read_with_etag(self, uri: str | StorageURI) -> tuple[bytes, str]:
        u = as_uri(uri)
        with self._errors(u, "read"):
            response = self._get_stream(u)
            with contextlib.closing(response["Body"]) as body:
                data = body.read()
        _verify(u, len(data), crc32(data), int(response["ContentLength"]), expected_crc(response))
        return bytes(data), str(response.get("ETag", "")).strip('"')

    def _conditional_put(self, uri: StorageURI, data: bytes, condition: dict[str, str], lost: str) -> str:
        if is_prefix(uri):
            raise StorageError(f"cannot write bytes to {uri}: it names a prefix, not an object")
        crc = crc32(data)
        with self._errors(uri, "write"):
            try:
                response = self.client.put_object(
                    Bucket=uri.bucket, Key=uri.key, Body=data, ChecksumCRC32=crc_b64(crc),
                    Metadata={CRC_META: f"{crc:08x}"}, **condition)
            except ClientError as exc:
                code, status = error_code(exc)
                if code in _LOST_CONDITION or status in (409, 412):
                    raise PreconditionFailed(f"{uri}: {lost}") from exc
                if "IfMatch" in condition and code != "NoSuchBucket" and (code == "NoSuchKey" or status == 404):
                    raise PreconditionFailed(f"{uri}: {lost}") from exc
                raise
        return str(response.get("ETag", "")).strip('"')

    def create_only(self, uri: str | StorageURI, data: bytes) -> str:
        return self._conditional_put(as_uri(uri), data, {"IfNoneMatch": "*"}, "an object is already there")

    def replace_if(self, uri: str | StorageURI, data: bytes, etag: str) -> str:
        return self._conditional_put(as_uri(uri), data, {"IfMatch": f'"{etag}"'},
                                     f"the object changed (or went) since it was read as ETag {etag}")

    def delete_prefix(self, prefix_uri: str | StorageURI) -> int:
        u = as_uri(prefix_uri)
        try:
            keys = [o.key for o in self.list(u)]
        except ObjectNotFound:
            return 0
        with self._errors(u, "delete"):
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = keys[start:start + _DELETE_BATCH]
                response = self.client.delete_objects(
                    Bucket=u.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                errors = response.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"cannot delete {len(errors)} object(s) under {u}; first "
                        f"s3://{u.bucket}/{first.get('Key')}: {first.get('Code')}: {first.get('Message')}")
        return len(keys)

    def sweep_partial(self, prefix_uri: str | StorageURI, keys: Iterable[str | StorageURI] = ()) -> int:
        """Abort the multipart uploads under ``prefix_uri`` that a killed writer
        left unfinished (their parts use space but never form an object). Only
        for a prefix no live writer uses (a job's own artifacts once it has ended).
        MinIO lists uploads only for an exact object name, so the objects a
        writer may have been uploading can be named in ``keys`` as well."""
        u = as_uri(prefix_uri)
        seen: set[tuple[str, str]] = set()
        with self._errors(u, "clean up unfinished uploads under"):
            for where in [u, *(as_uri(k) for k in keys)]:
                pages = self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=where.bucket, Prefix=where.key)
                for page in pages:
                    for upload in page.get("Uploads") or []:
                        if not key_matches(u, upload["Key"]) or (upload["Key"], upload["UploadId"]) in seen:
                            continue
                        seen.add((upload["Key"], upload["UploadId"]))
                        self.client.abort_multipart_upload(Bucket=u.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
        return len(seen)

    def ensure_bucket(self, uri: str | StorageURI) -> None:
        u = as_uri(uri)
        with self._errors(u, "create the bucket of"):
            try:
                self.client.head_bucket(Bucket=u.bucket)
                return
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
            region = self.client.meta.region_name
            kwargs: dict[str, Any] = {}
            if region and region not in ("us-east-1", "aws-global"):
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.client.create_bucket(Bucket=u.bucket, **kwargs)
            except ClientError as exc:
                if error_code(exc)[0] != "BucketAlreadyOwnedByYou":
                    raise
