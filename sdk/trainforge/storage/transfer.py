"""What every store does the same way: turn a file/folder/prefix transfer into
a list of single-object transfers and run them in parallel, reporting
progress. A store supplies the single-object primitives."""

from __future__ import annotations

import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from ..config import Settings
from ..errors import ObjectNotFound, StorageError
from ..uris import StorageURI
from .base import (
    ObjectInfo,
    TransferProgress,
    TransferStats,
    as_uri,
    check_shard,
    relative_name,
    safe_relpath,
    shard_objects,
    upload_target,
)
from .files import LocalFile, temp_path_for, walk_files, write_error
from .progress import NullProgress

T = TypeVar("T")


class BaseStore(ABC):
    """Shared orchestration; subclasses implement the abstract primitives."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.max_concurrency = settings.s3.max_concurrency
        self.download_concurrency: int | None = None  # None: max_concurrency

    # --- primitives -----------------------------------------------------------
    @abstractmethod
    def _put(self, source: LocalFile, uri: StorageURI, progress: TransferProgress) -> None:
        """Store one local file as ``uri``, atomically; advance progress by its bytes."""

    @abstractmethod
    def _get(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        """Fetch one object to ``target`` (temp file + rename), verified."""

    def _get_new(self, obj: ObjectInfo, uri: StorageURI, target: str, progress: TransferProgress) -> None:
        """Fetch one object to ``target``, a new file in a folder no reader sees
        yet (see download_prefix): no temp file needed. Default: as ``_get``."""
        self._get(obj, uri, target, progress)

    # A prefix downloaded into a folder that does not exist yet goes into a hidden
    # sibling first, renamed into place whole (see download_prefix).
    whole_folder_downloads = False

    @abstractmethod
    def _stat(self, uri: StorageURI) -> ObjectInfo:
        """The object ``uri`` names; ObjectNotFound naming it otherwise."""

    @abstractmethod
    def list(self, prefix_uri: str | StorageURI) -> list[ObjectInfo]: ...

    # --- transfers ------------------------------------------------------------
    def upload_file(self, local_path: str, uri: str | StorageURI,
                    progress: TransferProgress | None = None) -> TransferStats:
        path = os.path.abspath(local_path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise StorageError(f"cannot upload {path}: no such file") from None
        except OSError as exc:
            raise StorageError(f"cannot upload {path}: {exc.strerror or exc}") from exc
        if not os.path.isfile(path):
            raise StorageError(f"cannot upload {path}: not a regular file (use upload_dir for folders)")
        target = upload_target(as_uri(uri), os.path.basename(path))
        source = LocalFile(os.path.basename(path), path, st.st_size)
        return self._run([(source, target)], lambda item, p: self._put(item[0], item[1], p),
                         [source.size], progress, f"upload {os.path.basename(path)}")

    def upload_dir(self, local_dir: str, prefix_uri: str | StorageURI,
                   progress: TransferProgress | None = None) -> TransferStats:
        prefix = as_uri(prefix_uri).as_prefix()
        files = walk_files(local_dir)
        items = [(f, prefix.join(f.rel)) for f in files]
        return self._run(items, lambda item, p: self._put(item[0], item[1], p),
                         [f.size for f in files], progress, f"upload {prefix}")

    def download_file(self, uri: str | StorageURI, local_path: str,
                      progress: TransferProgress | None = None) -> TransferStats:
        u = as_uri(uri)
        obj = self._stat(u)
        target = os.path.abspath(local_path)
        if os.path.isdir(target) or local_path.endswith(("/", os.sep)):  # a folder: keep the name
            target = os.path.join(target, os.path.basename(obj.key))
        return self._run([(obj, target)], lambda item, p: self._get(item[0], u, item[1], p),
                         [obj.size], progress, f"download {os.path.basename(obj.key)}")

    def download_prefix(self, prefix_uri: str | StorageURI, local_dir: str,
                        progress: TransferProgress | None = None,
                        shard: tuple[int, int] | None = None) -> TransferStats:
        check_shard(shard)
        u = as_uri(prefix_uri)
        root = os.path.abspath(local_dir)
        wanted: list[tuple[ObjectInfo, str]] = []
        for obj in self.list(u):
            rel = relative_name(u, obj.key)
            if obj.key.endswith("/") and obj.size == 0:
                continue  # a "folder" marker object made by consoles and some tools
            safe = safe_relpath(rel)
            if safe is None:
                raise StorageError(f"refusing to download {obj.uri}: its key would land outside {root}")
            wanted.append((obj, os.path.join(root, *safe.split("/"))))
        if not wanted:
            raise ObjectNotFound(f"no objects at {u}")
        mine = {o.key for o in shard_objects([o for o, _ in wanted], shard)}
        items = [(o, t) for o, t in wanted if o.key in mine]
        what = f"download {u}" + (f" (shard {shard[0] + 1}/{shard[1]})" if shard else "")
        # Into a folder that does not exist yet: a hidden sibling (a temp name, swept
        # like a temp file) is filled without a temp file + rename per file, then
        # renamed into place whole, so no reader ever sees part of the download.
        hidden = temp_path_for(root) if self.whole_folder_downloads and not os.path.lexists(root) else None
        get = self._get if hidden is None else self._get_new
        if hidden is not None:
            items = [(o, hidden + t[len(root):]) for o, t in items]
        try:
            # The object's URI from its key, not parsed again from text per object.
            stats = self._run(items, lambda item, p: get(item[0], StorageURI(u.scheme, u.bucket, item[0].key),
                                                         item[1], p),
                              [o.size for o, _ in items], progress, what, self.download_concurrency)
            if hidden is not None and os.path.isdir(hidden):
                try:
                    os.rename(hidden, root)  # fails if something made root meanwhile: never merged
                except OSError as exc:
                    raise write_error(root, exc) from exc
        finally:
            if hidden is not None and os.path.lexists(hidden):
                shutil.rmtree(hidden, ignore_errors=True)
        return stats

    # --- parallel runner ------------------------------------------------------
    def _run(self, items: Sequence[T], one: Callable[[T, TransferProgress], None],
             sizes: Sequence[int], progress: TransferProgress | None,
             description: str, threads: int | None = None) -> TransferStats:
        """Run ``one`` over ``items`` on a pool of ``threads`` (default
        ``max_concurrency``) threads.
        The first failure cancels what has not started and is raised as is
        (it names its object); the others finish or fail quietly."""
        progress = progress if progress is not None else NullProgress()
        started = time.monotonic()
        progress.start(len(items), sum(sizes), description)

        def task(item: T) -> None:
            one(item, progress)
            progress.file_done()

        try:
            workers = min(threads or self.max_concurrency, len(items))
            if workers <= 1:
                for item in items:
                    task(item)
            else:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trainforge-storage")
                try:
                    futures = [pool.submit(task, item) for item in items]
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    failed = next((f for f in futures if f in done and f.exception()), None)
                    if failed is not None:
                        for f in futures:
                            f.cancel()
                        wait(futures)
                        raise failed.exception()  # type: ignore[misc]
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            progress.finish()
        return TransferStats(len(items), sum(sizes), time.monotonic() - started)
