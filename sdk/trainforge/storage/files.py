"""Local-disk helpers shared by the stores: atomic writes (temp file beside the
target, then ``os.replace``), walking a folder to upload, CRC32 of a file.

Temp files are hidden and carry ``.tf-tmp-`` in their name; listings skip
them, so a reader never sees an object before it is whole. Every OSError on
the writing side becomes a StorageError naming the target path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import StorageError

CHUNK = 1024 * 1024
TMP_MARK = ".tf-tmp-"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def temp_path_for(target: str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{TMP_MARK}{secrets.token_hex(6)}")


def write_error(path: str, exc: OSError, verb: str = "write") -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot {verb} {path}: {reason}")


def make_dirs(folder: str) -> None:
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc, "create directory") from exc


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: str, target: str, durable: bool) -> None:
    try:
        if durable:
            _fsync_path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise write_error(target, exc) from exc
    if durable:
        with contextlib.suppress(OSError):  # not every filesystem can fsync a directory
            _fsync_path(os.path.dirname(target) or ".", directory=True)


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(target: str, durable: bool = False) -> Iterator[str]:
    """Yield a temp path beside ``target``; when the block ends cleanly the
    temp file replaces ``target`` in one rename, otherwise it is removed.
    ``durable`` fsyncs the file and its folder (the store's own writes)."""
    target = os.path.abspath(target)
    make_dirs(os.path.dirname(target))
    tmp = temp_path_for(target)
    try:
        yield tmp
        _commit(tmp, target, durable)
    except BaseException:
        _discard(tmp)
        raise


class _Sink:
    """A write-only file whose OSErrors name the final target, not the temp file."""

    def __init__(self, handle: BinaryIO, target: str):
        self._handle, self.target = handle, target

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            raise write_error(self.target, exc) from exc

    def fileno(self) -> int:
        return self._handle.fileno()


@contextlib.contextmanager
def atomic_file(target: str, durable: bool = False) -> Iterator[_Sink]:
    """Like :func:`atomic_path`, but yields the open temp file to write to."""
    with atomic_path(target, durable) as tmp:
        try:
            handle = open(tmp, "xb")  # noqa: SIM115 (closed below; open errors name the target)
        except OSError as exc:
            raise write_error(os.path.abspath(target), exc) from exc
        with handle:
            yield _Sink(handle, os.path.abspath(target))
            try:
                handle.flush()
            except OSError as exc:
                raise write_error(os.path.abspath(target), exc) from exc


def pump(source: BinaryIO, sink: _Sink | BinaryIO, on_bytes: Callable[[int], None] | None = None,
         crc: int = 0) -> tuple[int, int]:
    """Copy ``source`` to ``sink`` in chunks; return (bytes copied, CRC32)."""
    total = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return total, crc
        sink.write(chunk)
        crc = zlib.crc32(chunk, crc)
        total += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks, copy-on-write


def clone(source: BinaryIO, sink: _Sink) -> int | None:
    """Reflink ``source`` into the empty ``sink`` (XFS, btrfs, ...): a copy that
    costs no time or space, and writing it never changes the source. Its size,
    or None where the filesystem cannot (then copy)."""
    try:
        import fcntl

        fcntl.ioctl(sink.fileno(), _FICLONE, source.fileno())
    except (OSError, ImportError):
        return None
    return os.fstat(sink.fileno()).st_size


def crc32_file(path: str) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass(frozen=True)
class LocalFile:
    rel: str   # posix path relative to the walked folder
    path: str  # absolute path
    size: int


def walk_files(local_dir: str) -> list[LocalFile]:
    """Every regular file under ``local_dir`` (symlinks to files included,
    broken links and our temp files skipped), sorted by relative path."""
    root = os.path.abspath(local_dir)
    if not os.path.isdir(root):
        what = "is not a directory" if os.path.exists(root) else "does not exist"
        raise StorageError(f"cannot upload {root}: {what}")
    found: list[LocalFile] = []

    def fail(exc: OSError) -> None:
        raise StorageError(f"cannot read {exc.filename or root}: {exc.strerror or exc}") from exc

    for folder, dirs, names in os.walk(root, onerror=fail):
        dirs.sort()
        for name in names:
            if is_temp_name(name):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # a broken symlink, or a file removed while walking
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if not os.path.isfile(path):
                continue  # fifos, sockets, devices
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            found.append(LocalFile(rel, path, st.st_size))
    found.sort(key=lambda f: f.rel)
    return found
