"""The embedded object store (``local://bucket/key`` -> ``<store_root>/bucket/key``)
and plain local paths (``file:///abs/path``), both as an ObjectStore.

Writes go to a hidden temp file beside the target, are fsynced and renamed into
place, so a reader sees the old file, no file, or the whole new one; listings
skip the temp files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

from ..config import Settings
from ..errors import IntegrityError, ObjectNotFound, PreconditionFailed, StorageError
from ..uris import StorageURI
from .base import ObjectInfo, TransferProgress, as_uri, is_prefix
from .files import (
    LocalFile,
    atomic_fd,
    atomic_file,
    copy_fd,
    is_temp_name,
    make_dirs,
    new_fd,
    pump,
    walk_files,
    write_error,
)
from .transfer import BaseStore


class LocalStore(BaseStore):
    """An ObjectStore on the local filesystem, for ``local://`` and ``file://``."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.root = str(settings.store_root)
        # A download here is a local copy: page-cache work for the CPU, not waiting
        # on a network, and threads past half the cores only contend
        # (bench/local_bench.py, 2 cores, 2,000 small files: 1 thread 0.78x of a
        # raw copy, 2 threads 0.58x, 8 threads 0.74x; never better with more
        # threads in any run). Uploads keep max_concurrency: each one ends
        # in an fsync, which threads overlap (8 threads: 5-10x faster than 1).
        self.download_concurrency = max(1, min(self.max_concurrency, (os.cpu_count() or 1) // 2))

    # --- addressing -------------------------------------------------------------
    def _path(self, uri: StorageURI) -> str:
        key = uri.key.rstrip("/")
        if uri.scheme == "file":
            return "/" + key
        if uri.scheme == "local":
            return os.path.join(self.root, uri.bucket, *[p for p in key.split("/") if p])
        raise StorageError(f"the local store cannot handle {uri} (expected local:// or file://)")

    def _info(self, base: StorageURI, key: str, size: int) -> ObjectInfo:
        return ObjectInfo(str(StorageURI(base.scheme, base.bucket, key)), key, size, None)

    def local_path(self, uri: str | StorageURI) -> str | None:
        return self._path(as_uri(uri))

    # --- reading ------------------------------------------------------------------
    def list(self, prefix_uri: str | StorageURI) -> list[ObjectInfo]:
        u = as_uri(prefix_uri)
        path = self._path(u)
        if not is_prefix(u) and os.path.isfile(path):
            return [self._info(u, u.key, os.path.getsize(path))]
        if not os.path.isdir(path):
            return []
        base = u.key if is_prefix(u) else u.key + "/"
        return [self._info(u, base + f.rel, f.size) for f in walk_files(path)]

    def _stat(self, uri: StorageURI) -> ObjectInfo:
        path = self._path(uri)
        if is_prefix(uri) or not os.path.isfile(path):
            raise ObjectNotFound(f"no object at {uri} ({path})")
        return self._info(uri, uri.key, os.path.getsize(path))

    def exists(self, uri: str | StorageURI) -> bool:
        u = as_uri(uri)
        path = self._path(u)
        if os.path.isfile(path):
            return not is_prefix(u)
        if not os.path.isdir(path):
            return False
        return any(not is_temp_name(n) for _, _, names in os.walk(path) for n in names)

    def read_bytes(self, uri: str | StorageURI) -> bytes:
        u = as_uri(uri)
        path = self._path(u)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {u} ({path})") from None
        except OSError as exc:
            raise StorageError(f"cannot read {u} ({path}): {exc.strerror or exc}") from exc

    def read_tail(self, uri: str | StorageURI, max_bytes: int) -> tuple[bytes, int]:
        u = as_uri(uri)
        path = self._path(u)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                handle.seek(max(0, size - max_bytes))
                return handle.read(max_bytes), size
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {u} ({path})") from None
        except OSError as exc:
            raise StorageError(f"cannot read {u} ({path}): {exc.strerror or exc}") from exc

    whole_folder_downloads = True  # measured: the per-file temp + rename was ~25% of a small file's copy

    def _get(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        self._copy_out(obj, uri, os.path.abspath(target), progress, atomic_fd)

    def _get_new(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        self._copy_out(obj, uri, target, progress, new_fd)

    def _copy_out(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress,
                  open_sink: Callable[[str], AbstractContextManager[int]]) -> None:
        path = self._path(uri)
        try:
            source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {uri} ({path})") from None
        except OSError as exc:
            raise StorageError(f"cannot read {uri} ({path}): {exc.strerror or exc}") from exc
        try:
            with open_sink(target) as sink:
                # A copy, never a link: a reflink where the filesystem can, else the
                # kernel's copy (FastFile on the process backend: the trainer may write).
                copied = copy_fd(source, sink, obj.size, target, progress.advance)
                if copied != obj.size:
                    raise IntegrityError(f"{uri} changed while being copied to {target}: "
                                         f"expected {obj.size} bytes, read {copied}")
        finally:
            os.close(source)

    # --- writing ------------------------------------------------------------------
    def _put(self, source: LocalFile, uri: StorageURI, progress: TransferProgress) -> None:
        target = self._path(uri)
        try:
            handle = open(source.path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise StorageError(f"cannot read {source.path}: {exc.strerror or exc}") from exc
        with handle, atomic_file(target, durable=True) as sink:
            copied, _ = pump(handle, sink, progress.advance)
            if copied != source.size:
                raise IntegrityError(f"{source.path} changed while being stored as {uri}: "
                                     f"expected {source.size} bytes, read {copied}")

    def write_bytes(self, uri: str | StorageURI, data: bytes) -> None:
        u = as_uri(uri)
        if is_prefix(u):
            raise StorageError(f"cannot write bytes to {u}: it names a prefix, not an object")
        with atomic_file(self._path(u), durable=True) as sink:
            sink.write(data)

    # --- conditional writes (ConditionalWrites) -------------------------------------
    # The ETag is the MD5 of the bytes (S3's for a single-part object). Each check
    # and its write happen under an exclusive flock on the object's folder, so two
    # writers (threads or processes on this machine) never both pass the check.
    @contextlib.contextmanager
    def _folder_lock(self, path: str) -> Iterator[None]:
        folder = os.path.dirname(path)
        make_dirs(folder)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise write_error(folder, exc, "lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _current_etag(self, path: str) -> str | None:
        try:
            with open(path, "rb") as handle:
                return hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def read_with_etag(self, uri: str | StorageURI) -> tuple[bytes, str]:
        data = self.read_bytes(uri)
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    def _conditional_write(self, uri: str | StorageURI, data: bytes, etag: str | None) -> str:
        u = as_uri(uri)
        if is_prefix(u):
            raise StorageError(f"cannot write bytes to {u}: it names a prefix, not an object")
        path = self._path(u)
        with self._folder_lock(path):
            current = self._current_etag(path)
            if etag is None and current is not None:
                raise PreconditionFailed(f"{u}: an object is already there")
            if etag is not None and current != etag:
                raise PreconditionFailed(f"{u}: the object changed (or went) since it was read as ETag {etag}")
            with atomic_file(path, durable=True) as sink:
                sink.write(data)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def create_only(self, uri: str | StorageURI, data: bytes) -> str:
        return self._conditional_write(uri, data, None)

    def replace_if(self, uri: str | StorageURI, data: bytes, etag: str) -> str:
        return self._conditional_write(uri, data, etag)

    def delete_prefix(self, prefix_uri: str | StorageURI) -> int:
        u = as_uri(prefix_uri)
        objects = self.list(u)
        for obj in objects:
            path = self._path(as_uri(obj.uri))
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise write_error(path, exc, "delete") from exc
        self._prune(self._path(u))
        return len(objects)

    def _prune(self, top: str) -> None:
        """Remove folders left empty under ``top`` (and ``top``), never a bucket root."""
        if not os.path.isdir(top):
            return
        keep = {os.path.abspath(self.root)}
        if top.startswith(self.root + os.sep):
            keep.add(os.path.join(self.root, os.path.relpath(top, self.root).split(os.sep)[0]))
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            if os.path.abspath(folder) in keep:
                continue
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty, or not ours to remove

    def sweep_partial(self, prefix_uri: str | StorageURI, keys: Iterable[str | StorageURI] = ()) -> int:
        """Remove the temp files of writes that never finished (a writer killed
        midway) under ``prefix_uri``; listings never showed them. Only for a
        prefix no live writer uses (a job's own artifacts once it has ended).
        ``keys`` (for S3's sake) adds nothing here: the walk finds them all."""
        top = self._path(as_uri(prefix_uri))
        removed = 0
        for folder, _, names in os.walk(top):
            for name in names:
                if is_temp_name(name):
                    try:
                        os.unlink(os.path.join(folder, name))
                        removed += 1
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise write_error(os.path.join(folder, name), exc, "delete") from exc
        return removed

    def ensure_bucket(self, uri: str | StorageURI) -> None:
        u = as_uri(uri)
        if u.scheme == "local":
            make_dirs(os.path.join(self.root, u.bucket))
