"""The storage contract: the ``ObjectStore`` protocol, its value types and the
pure decisions every store shares (which keys a prefix holds, which keys a
host takes when sharding, where an object lands on disk). No I/O here.

Prefix semantics, the same for every store: a URI whose key is empty or ends
in ``/`` names everything under it. A URI without the trailing ``/`` names the
object with exactly that key *and* everything under ``key/`` (so
``s3://b/data/train`` means the file ``train`` or the folder ``train/``, never
``data/train2/``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import StorageError
from ..uris import StorageURI, parse_uri

MiB = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its full URI, key within the bucket, size and (S3) ETag."""

    uri: str
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class TransferStats:
    """What one upload or download moved."""

    files: int
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Throughput in MiB/s (0 when nothing measurable was moved)."""
        return self.bytes / MiB / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.files} file(s), {self.bytes / MiB:.1f} MiB in {self.seconds:.2f}s "
                f"({self.mb_per_s:.1f} MiB/s)")


@runtime_checkable
class TransferProgress(Protocol):
    """Receives progress of one transfer. Methods are called from worker
    threads, so implementations must be thread-safe."""

    def start(self, total_files: int, total_bytes: int, description: str) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    """An object store addressed by URIs (``s3://``, ``local://``, ``file://``).

    Every write is atomic per object: a reader sees the old object, no
    object, or the whole new one. Errors are ``trainforge.errors.StorageError``
    subclasses naming the URI or path.
    """

    def upload_file(self, local_path: str, uri: str | StorageURI,
                    progress: TransferProgress | None = None) -> TransferStats: ...
    def upload_dir(self, local_dir: str, prefix_uri: str | StorageURI,
                   progress: TransferProgress | None = None) -> TransferStats: ...
    def download_file(self, uri: str | StorageURI, local_path: str,
                      progress: TransferProgress | None = None) -> TransferStats: ...
    def download_prefix(self, prefix_uri: str | StorageURI, local_dir: str,
                        progress: TransferProgress | None = None,
                        shard: tuple[int, int] | None = None) -> TransferStats: ...
    def list(self, prefix_uri: str | StorageURI) -> list[ObjectInfo]: ...
    def exists(self, uri: str | StorageURI) -> bool: ...
    def read_bytes(self, uri: str | StorageURI) -> bytes: ...
    def read_tail(self, uri: str | StorageURI, max_bytes: int) -> tuple[bytes, int]:
        """The object's last ``max_bytes`` (all of it when smaller) and its whole size."""
        ...
    def write_bytes(self, uri: str | StorageURI, data: bytes) -> None: ...
    def delete_prefix(self, prefix_uri: str | StorageURI) -> int: ...
    def local_path(self, uri: str | StorageURI) -> str | None: ...
    def ensure_bucket(self, uri: str | StorageURI) -> None: ...


@runtime_checkable
class ConditionalWrites(Protocol):
    """Optional capability: small documents written only if a condition holds,
    atomically on the store's side (S3 ``If-None-Match: *`` / ``If-Match``; the
    embedded store under a directory lock). A lost condition raises
    ``trainforge.errors.PreconditionFailed``; nothing is written then."""

    def read_with_etag(self, uri: str | StorageURI) -> tuple[bytes, str]:
        """The object's bytes and the ETag a later ``replace_if`` compares against."""
        ...
    def create_only(self, uri: str | StorageURI, data: bytes) -> str:
        """Write ``data`` only if no object is at ``uri``; its new ETag."""
        ...
    def replace_if(self, uri: str | StorageURI, data: bytes, etag: str) -> str:
        """Write ``data`` only if the object is still the one with ``etag``; its new ETag."""
        ...


# --- pure helpers -----------------------------------------------------------

def as_uri(uri: str | StorageURI) -> StorageURI:
    """Accept a URI as text or parsed; a malformed one raises StorageError
    saying what was expected."""
    if isinstance(uri, StorageURI):
        return uri
    try:
        return parse_uri(uri)
    except ValueError as exc:
        raise StorageError(str(exc)) from None


def is_prefix(uri: StorageURI) -> bool:
    """True when the URI can only mean "everything under": empty key or trailing '/'."""
    return uri.key == "" or uri.key.endswith("/")


def key_matches(uri: StorageURI, key: str) -> bool:
    """Does ``key`` belong to what ``uri`` names (see the module docstring)?"""
    if is_prefix(uri):
        return key.startswith(uri.key)
    return key == uri.key or key.startswith(uri.key + "/")


def relative_name(uri: StorageURI, key: str) -> str:
    """Where ``key`` (one of the keys ``uri`` names) goes below a download folder:
    its path relative to the prefix, or its basename when ``uri`` is that object."""
    if not is_prefix(uri) and key == uri.key:
        return posixpath.basename(key)
    base = uri.key if is_prefix(uri) else uri.key + "/"
    return key[len(base):]


def safe_relpath(rel: str) -> str | None:
    """Normalise a key-derived relative path for the local disk; None when it
    would escape the target folder or names a folder marker (``dir/``)."""
    if not rel or rel.endswith("/"):
        return None
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def upload_target(uri: StorageURI, filename: str) -> StorageURI:
    """The object a single-file upload writes: ``uri`` itself, or
    ``uri/<filename>`` when ``uri`` is a prefix."""
    return uri.join(filename) if is_prefix(uri) else uri


def check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ValueError(f"shard must be (index, count), got {shard!r}") from None
    if not (isinstance(index, int) and isinstance(count, int)) or count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")


def shard_objects(objects: Sequence[ObjectInfo], shard: tuple[int, int] | None) -> list[ObjectInfo]:
    """ShardedByS3Key: sort by key; host ``index`` of ``count`` takes every
    ``count``-th key starting at ``index``. Every key goes to exactly one host."""
    check_shard(shard)
    ordered = sorted(objects, key=lambda o: o.key)
    if shard is None:
        return ordered
    index, count = shard
    return ordered[index::count]


def total_size(objects: Iterable[ObjectInfo]) -> int:
    return sum(o.size for o in objects)
