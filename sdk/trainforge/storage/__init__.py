"""Object storage for trainforge: ``s3://`` (boto3: MinIO, AWS or any S3),
``local://`` (the embedded store, a directory tree) and ``file://``.

    store = open_store("s3://datasets/mnist/")
    store.download_prefix("s3://datasets/mnist/train/", "/opt/ml/input/data/train",
                          progress=RichProgress(), shard=(host_index, host_count))

Transfers run in parallel, large files in parts; every object is written
atomically and checked (size and CRC32) so a reader never sees half of one.
Failures are ``trainforge.errors.StorageError`` subclasses naming the URI,
path or endpoint. boto3 is imported only when an ``s3://`` store is opened.
"""

from __future__ import annotations

from ..config import Settings, load_settings
from ..uris import StorageURI
from .base import ConditionalWrites, ObjectInfo, ObjectStore, TransferProgress, TransferStats, as_uri
from .local import LocalStore
from .progress import NullProgress, RichProgress

__all__ = [
    "ConditionalWrites", "NullProgress", "ObjectInfo", "ObjectStore", "RichProgress", "TransferProgress",
    "TransferStats", "open_store",
]


def open_store(uri: str | StorageURI, settings: Settings | None = None) -> ObjectStore:
    """The store that serves ``uri``'s scheme: S3Store for ``s3://`` (its boto3
    client cached per settings), LocalStore for ``local://`` and ``file://``.
    ``settings`` defaults to :func:`trainforge.config.load_settings`."""
    parsed = as_uri(uri)
    settings = settings if settings is not None else load_settings()
    if parsed.scheme == "s3":
        from .s3 import S3Store

        return S3Store(settings)
    return LocalStore(settings)
