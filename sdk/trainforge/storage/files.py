"""Local-disk helpers shared by the stores: atomic writes (temp file beside the
target, then ``os.replace``), walking a folder to upload, CRC32 of a file.

Temp files are hidden and carry ``.tf-tmp-`` in their name; listings skip
them, so a reader never sees an object before it is whole. Every OSError on
the writing side becomes a StorageError naming the target path.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import StorageError
from .crc import crc32, crc32_concat

CHUNK = 1024 * 1024
TMP_MARK = ".tf-tmp-"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


# A temp name is unique by the process (pid, and a random token in case the
# pid is reused) and a counter: no random bytes from the kernel per file.
_TEMP_TOKEN = secrets.token_hex(4)
_temp_numbers = itertools.count()


def temp_path_for(target: str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{TMP_MARK}{os.getpid():x}-{_TEMP_TOKEN}-{next(_temp_numbers):x}")


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


class FdSink:
    """A raw descriptor written whole by each ``write``; OSErrors name the final target."""

    def __init__(self, fd: int, target: str):
        self._fd, self.target = fd, target

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise write_error(self.target, exc) from exc
        return len(data)

    def fileno(self) -> int:
        return self._fd


@contextlib.contextmanager
def atomic_file(target: str, durable: bool = False) -> Iterator[FdSink]:
    """Like :func:`atomic_path`, but yields the open temp file to write to
    (unbuffered: every write reaches the file, errors named after ``target``)."""
    target = os.path.abspath(target)
    with atomic_path(target, durable) as tmp:
        try:
            handle = open(tmp, "xb", buffering=0)  # noqa: SIM115 (closed below; open errors name the target)
        except OSError as exc:
            raise write_error(target, exc) from exc
        with handle:
            yield FdSink(handle.fileno(), target)


def pump(source: BinaryIO, sink: FdSink | BinaryIO, on_bytes: Callable[[int], None] | None = None,
         crc: int = 0) -> tuple[int, int]:
    """Copy ``source`` to ``sink`` in chunks; return (bytes copied, CRC32)."""
    total = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return total, crc
        sink.write(chunk)
        crc = crc32(chunk, crc)
        total += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks, copy-on-write
# Chunk of an in-kernel copy: progress (and so cancellation) is reported per
# chunk. 8 MiB reached the copy_file_range/sendfile plateau in
# bench/local_bench.py; 1 MiB chunks cost a third more time.
COPY_CHUNK = 8 * 1024 * 1024
# At or below this size a file is read and written whole from user space: one
# read and one write, no offload set-up. For 16 KiB files it measured 2x faster
# than copy_file_range in one run and within noise of it in others
# (bench/local_bench.py prints both).
SMALL_FILE = 1024 * 1024
_NO_OFFLOAD = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY}


def clone(source: BinaryIO | int, sink: FdSink | int) -> int | None:
    """Reflink ``source`` into the empty ``sink`` (XFS, btrfs, ...): a copy that
    costs no time or space, and writing it never changes the source (unlike a
    hard link, which would let a trainer write into the store). Its size, or
    None where the filesystem cannot (then copy): one failed ioctl."""
    src = source if isinstance(source, int) else source.fileno()
    dst = sink if isinstance(sink, int) else sink.fileno()
    try:
        import fcntl

        fcntl.ioctl(dst, _FICLONE, src)
    except (OSError, ImportError):
        return None
    return os.fstat(dst).st_size


def reserve(fd: int, size: int) -> None:
    """Make the file ``size`` bytes long with its blocks allocated, for writes
    at any offset: threads ``pwrite``-ing into a sparse file took 0.6-1.8 s
    of CPU per GiB here against 0.4-0.5 s into an allocated one (block
    allocation under the inode's lock), and a full disk fails now, not
    midway. A file system without fallocate gets a sparse file (truncate)."""
    if size <= 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        os.ftruncate(fd, size)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_fd(src: int, dst: int, size: int, target: str, on_bytes: Callable[[int], None] | None = None) -> int:
    """Copy the open file ``src`` into the empty file ``dst``; bytes copied.

    The fastest way this machine offers, measured in bench/local_bench.py: a
    reflink where the filesystem can; a whole read and write for small files;
    otherwise the kernel's copy offload (copy_file_range, else sendfile: no
    bytes pass through Python) in COPY_CHUNK chunks, ``on_bytes`` after each,
    so a cancellation raised there stops the copy midway. ``size`` is what the
    source is expected to hold; a source that grew is still copied whole.
    OSErrors of the copy become a StorageError naming ``target``; what
    ``on_bytes`` raises passes through."""
    cloned = clone(src, dst)
    if cloned is not None:
        if on_bytes is not None:
            on_bytes(cloned)
        return cloned
    total = 0
    steps = [_read_write(src, dst)] if size <= SMALL_FILE else _copy_steps(src, dst)
    step = steps.pop(0)
    while True:
        try:
            moved = step()
        except OSError as exc:
            if total or exc.errno not in _NO_OFFLOAD or not steps:
                raise write_error(target, exc) from exc
            step = steps.pop(0)  # this kernel or filesystem cannot: the next way
            continue
        if not moved:
            return total
        total += moved
        if on_bytes is not None:
            on_bytes(moved)


def _copy_steps(src: int, dst: int) -> list[Callable[[], int]]:
    """One chunk of copying each, fastest first: copy_file_range, sendfile, read/write."""
    steps: list[Callable[[], int]] = []
    if hasattr(os, "copy_file_range"):
        steps.append(lambda: os.copy_file_range(src, dst, COPY_CHUNK))
    if hasattr(os, "sendfile"):
        steps.append(lambda: os.sendfile(dst, src, None, COPY_CHUNK))
    steps.append(_read_write(src, dst))
    return steps


def _read_write(src: int, dst: int) -> Callable[[], int]:
    def step() -> int:
        chunk = os.read(src, COPY_CHUNK)
        _write_all(dst, chunk)
        return len(chunk)
    return step


def _create(path: str, flags: int, target: str) -> int:
    """``os.open(path, flags)``, making ``target``'s folders only when the first
    open finds them missing; errors named after ``target``."""
    try:
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:
            make_dirs(os.path.dirname(target))
            return os.open(path, flags, 0o666)
    except OSError as exc:
        raise write_error(target, exc) from exc


@contextlib.contextmanager
def atomic_fd(target: str) -> Iterator[int]:
    """A new temp file beside ``target`` as a raw descriptor; when the block
    ends cleanly it replaces ``target`` in one rename, otherwise it is
    removed. Folders are made only when the first open finds them missing
    (thousands of small files into one folder pay no stat for it)."""
    tmp = temp_path_for(target)
    fd = _create(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, target)
    try:
        try:
            yield fd
        finally:
            os.close(fd)
        _commit(tmp, target, False)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def new_fd(target: str) -> Iterator[int]:
    """``target`` created (it must not exist) as a raw descriptor, written in
    place: only for a folder no reader sees yet, which is renamed into place
    whole or removed (transfer.py download_prefix). Folders made as atomic_fd does."""
    fd = _create(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, target)
    try:
        yield fd
    finally:
        os.close(fd)


CRC_SPAN = 16 * 1024 * 1024  # a large file's CRC32 is computed in spans of this, in parallel


def crc32_file(path: str) -> int:
    """CRC32 of the file at ``path``. A file of several spans is read in
    parallel (the CRC releases the GIL) and the spans' CRCs combined: before a
    large upload this pass is on the critical path (bench/s3_bench.py)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        workers = min(8, os.cpu_count() or 1, size // CRC_SPAN)
        if workers < 2:
            crc = 0
            while chunk := handle.read(CHUNK):
                crc = crc32(chunk, crc)
            return crc
        from concurrent.futures import ThreadPoolExecutor

        fd = handle.fileno()

        def span(start: int) -> tuple[int, int]:
            crc, done = 0, 0
            while done < CRC_SPAN and (chunk := os.pread(fd, min(CHUNK * 4, CRC_SPAN - done), start + done)):
                crc = crc32(chunk, crc)
                done += len(chunk)
            return done, crc

        with ThreadPoolExecutor(workers, thread_name_prefix="trainforge-crc") as pool:
            return crc32_concat(pool.map(span, range(0, size, CRC_SPAN)))


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
            if not stat.S_ISREG(st.st_mode):
                continue  # fifos, sockets, devices
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            found.append(LocalFile(rel, path, st.st_size))
    found.sort(key=lambda f: f.rel)
    return found
