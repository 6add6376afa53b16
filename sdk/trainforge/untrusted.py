"""Reading and writing inside a tree that untrusted code can write.

A job's run folder (``/opt/ml`` of its container, the process backend's run
directory) belongs to the trainer while it runs: anything in it may be a
symlink, a fifo or a device the trainer planted to make the host-side code
read, copy, upload, chmod or write something outside the tree. So every
host-side access below the trusted ``root`` goes through here:

- every path component is opened relative to its parent's directory fd with
  ``O_NOFOLLOW | O_DIRECTORY`` (no link is ever followed, and no component can
  be swapped for a link between a check and its use);
- only directories and regular files are read, walked or packed; symlinks and
  special files are skipped with a warning naming them;
- writes create their parents the same way and replace files by rename, so a
  planted link is replaced, never written through; removal never follows links.

``root`` itself is trusted up to its last component (the backends create it),
which must be a real directory. Nothing here resolves ``..``: a relative path
with ``..`` or an absolute one is refused.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a fifo swapped in after the lstat must not block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR)
CHUNK = 1024 * 1024


class UnsafePath(OSError):
    """A path below the trusted root goes through a symlink or a non-directory."""


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if rel.startswith(("/", os.sep)) or ".." in parts:
        raise ValueError(f"{rel!r} is not a relative path inside the tree")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"


def _open_child_dir(parent: int, name: str, where: str, create: bool, mode: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, mode, dir_fd=parent)
    except FileExistsError:
        pass  # raced with someone making it: open whatever is there, no-follow
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in _NOT_A_DIR:
            raise UnsafePath(exc.errno, "not a directory (or a symlink)", where) from None
        raise


def open_dir(root: str, rel: str = "", create: bool = False, mode: int = 0o755) -> int:
    """A directory fd for ``root/rel``, every component opened no-follow;
    ``create`` makes missing ones with ``mode``. The caller closes it.
    UnsafePath when a component is a symlink or not a directory."""
    parts = _parts(rel)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in _NOT_A_DIR:
            raise UnsafePath(exc.errno, "not a directory (or a symlink)", root) from None
        raise
    for index, name in enumerate(parts):
        where = os.path.join(root, *parts[: index + 1])
        try:
            child = _open_child_dir(fd, name, where, create, mode)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NOT_A_DIR and not isinstance(exc, UnsafePath):
                raise UnsafePath(exc.errno, "not a directory (or a symlink)", where) from None
            raise
        os.close(fd)
        fd = child
    return fd


@contextlib.contextmanager
def opened_dir(root: str, rel: str = "", create: bool = False, mode: int = 0o755) -> Iterator[int]:
    fd = open_dir(root, rel, create, mode)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(rel: str) -> tuple[str, str]:
    parts = _parts(rel)
    if not parts:
        raise ValueError(f"{rel!r} names the tree's root, not an entry in it")
    return "/".join(parts[:-1]), parts[-1]


def open_regular(dir_fd: int, name: str, where: str = "") -> BinaryIO | None:
    """``name`` in ``dir_fd`` opened for reading if it is a regular file;
    None (with a warning for anything but absence) otherwise."""
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(before.st_mode):
        log.warning("skipping %s: %s, not a regular file", where or name, _kind(before.st_mode))
        return None
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a link since the stat
            log.warning("skipping %s: a symlink, not a regular file", where or name)
            return None
        raise
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        log.warning("skipping %s: it changed while being opened", where or name)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_file(root: str, rel: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the regular file ``root/rel``; None when it
    is absent, not a regular file, or reached through a link."""
    folder, name = _split(rel)
    try:
        with opened_dir(root, folder) as dir_fd:
            handle = open_regular(dir_fd, name, os.path.join(root, rel))
            if handle is None:
                return None
            with handle:
                return handle.read(limit)
    except FileNotFoundError:
        return None
    except UnsafePath as exc:
        log.warning("not reading %s: %s is %s", os.path.join(root, rel), exc.filename, exc.strerror)
        return None


@dataclass(frozen=True)
class Entry:
    """A directory or regular file met by :func:`walk`; ``dir_fd`` (the
    parent's, open during the walk) and ``name`` address it race-free."""

    rel: str
    dir_fd: int
    name: str
    is_dir: bool
    stat: os.stat_result

    def open(self) -> BinaryIO | None:
        return open_regular(self.dir_fd, self.name, self.rel)


def _walk_fd(dir_fd: int, prefix: str, where: str) -> Iterator[Entry]:
    with os.scandir(dir_fd) as scan:
        names = sorted(e.name for e in scan)
    for name in names:
        rel = f"{prefix}{name}"
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while walking
        if stat.S_ISREG(st.st_mode):
            yield Entry(rel, dir_fd, name, False, st)
        elif stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (*_NOT_A_DIR, errno.ENOENT):
                    log.warning("skipping %s/%s: it changed while being walked", where, rel)
                    continue
                raise
            try:
                yield Entry(rel, dir_fd, name, True, st)
                yield from _walk_fd(child, rel + "/", where)
            finally:
                os.close(child)
        else:
            log.warning("skipping %s/%s: %s, not a regular file or directory", where, rel, _kind(st.st_mode))


def walk(root: str, rel: str = "") -> Iterator[Entry]:
    """The directories and regular files below ``root/rel`` (not itself), parents
    before children, sorted by name; links and special files are skipped with a
    warning, never followed. Nothing when ``root/rel`` is absent or unsafe."""
    where = os.path.join(root, rel) if rel else root
    try:
        fd = open_dir(root, rel)
    except FileNotFoundError:
        return
    except UnsafePath as exc:
        log.warning("not reading %s: %s is %s", where, exc.filename, exc.strerror)
        return
    try:
        yield from _walk_fd(fd, "", where)
    finally:
        os.close(fd)


def has_files(root: str, rel: str = "") -> bool:
    return any(not entry.is_dir for entry in walk(root, rel))


def _clear_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a tree, a file, a link: never what a link points to)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based rmtree: it never follows links
    else:
        os.unlink(name, dir_fd=dir_fd)


def remove(root: str, rel: str) -> None:
    """Remove ``root/rel`` whatever it is, without following links; nothing when
    absent or when its parent is reached only through a link."""
    folder, name = _split(rel)
    try:
        with opened_dir(root, folder) as dir_fd:
            _clear_at(dir_fd, name)
    except FileNotFoundError:
        pass
    except UnsafePath as exc:
        log.warning("not removing %s: %s is %s", os.path.join(root, rel), exc.filename, exc.strerror)


def _unsafe_parent(root: str, folder: str) -> None:
    """Replace the first component of ``folder`` that is not a real directory
    (a planted link or file) with nothing, so it can be created anew."""
    parts = _parts(folder)
    fd = open_dir(root)
    try:
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno not in _NOT_A_DIR:
                    raise
                log.warning("replacing %s: not a directory", os.path.join(root, folder))
                _clear_at(fd, name)
                return
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def make_dirs(root: str, rel: str, mode: int = 0o755) -> None:
    """``root/rel`` as a real directory, parents too; a link or file in the way
    is removed (never followed)."""
    try:
        os.close(open_dir(root, rel, create=True, mode=mode))
    except UnsafePath:
        _unsafe_parent(root, rel)
        os.close(open_dir(root, rel, create=True, mode=mode))


def reset_dir(root: str, rel: str, mode: int = 0o755) -> None:
    """``root/rel`` as a new, empty, real directory (what was there removed,
    links unfollowed); its parents as :func:`make_dirs`."""
    folder, name = _split(rel)
    if folder:
        make_dirs(root, folder)
    with opened_dir(root, folder) as dir_fd:
        _clear_at(dir_fd, name)
        os.mkdir(name, mode, dir_fd=dir_fd)


def write_file(root: str, rel: str, data: bytes, mode: int = 0o644) -> None:
    """``data`` as the file ``root/rel``: written to a temp file in its folder
    and renamed over whatever entry was there (a planted link is replaced)."""
    folder, name = _split(rel)
    if folder:
        make_dirs(root, folder)
    with opened_dir(root, folder) as dir_fd:
        tmp = f".{name}.tf-tmp-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)  # whatever the umask
                handle.write(data)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    _clear_at(dir_fd, name)  # a folder planted where the file goes
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


def scrub(root: str, rel: str) -> int:
    """Leave only real directories and regular files in ``root/rel`` (made if
    missing): planted links and special files are removed, not followed.
    Afterwards, and while nobody else writes there, path-based code may write
    into the tree. The number of entries removed."""
    make_dirs(root, rel)
    removed = 0
    with opened_dir(root, rel) as top:
        pending = [(top, rel)]
        opened: list[int] = []
        try:
            while pending:
                dir_fd, where = pending.pop()
                with os.scandir(dir_fd) as scan:
                    names = [e.name for e in scan]
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                        except OSError as exc:
                            if exc.errno not in _NOT_A_DIR:
                                raise
                        else:
                            opened.append(child)
                            pending.append((child, f"{where}/{name}"))
                            continue
                    log.warning("removing %s/%s/%s: %s", root, where, name, _kind(st.st_mode))
                    _clear_at(dir_fd, name)
                    removed += 1
        finally:
            for fd in opened:
                os.close(fd)
    return removed


def chown_tree(root: str, rel: str, uid: int, gid: int) -> None:
    """``root/rel`` and its directories and regular files owned by uid:gid;
    links are neither followed nor changed."""
    with opened_dir(root, rel) as fd:
        os.chown(fd, uid, gid)
    for entry in walk(root, rel):
        os.chown(entry.name, uid, gid, dir_fd=entry.dir_fd, follow_symlinks=False)


def copy_out(root: str, rel: str, target: str,
             link: Callable[[int, str, str], bool | None] | None = None) -> int:
    """Copy the regular files and directories below ``root/rel`` into the
    trusted, new-or-empty folder ``target`` (which untrusted code cannot write);
    links and special files are skipped. Files are hard-linked where the
    filesystem allows (cheap, and the link is to the inode already checked),
    copied otherwise. The number of files."""
    link = link if link is not None else _hardlink
    os.makedirs(target, exist_ok=True)
    count = 0
    for entry in walk(root, rel):
        destination = os.path.join(target, *entry.rel.split("/"))
        if entry.is_dir:
            os.makedirs(destination, exist_ok=True)
            continue
        linked = link(entry.dir_fd, entry.name, destination)
        if linked is not False:
            count += bool(linked)
            continue
        handle = entry.open()
        if handle is None:
            continue
        with handle, open(destination, "xb") as sink:
            shutil.copyfileobj(handle, sink, CHUNK)
        count += 1
    return count


def _hardlink(dir_fd: int, name: str, destination: str) -> bool | None:
    """Hard-link ``name`` (not following a link) to ``destination``: True; False
    when the filesystem or permissions refuse (copy instead). A name swapped for
    a link since it was checked gives a link to that link: removed, None."""
    try:
        os.link(name, destination, src_dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(os.lstat(destination).st_mode):
        os.unlink(destination)
        log.warning("skipping %s: it changed while being copied", destination)
        return None
    return True
