"""Unpacking a tar(.gz) from the store without trusting it.

A model archive is packed from a folder the trainer controlled, so it is
untrusted input on the machine that unpacks it. The stdlib's
``extractall(filter="data")`` is not enough on every supported Python: the
symlink-chain escape (CVE-2025-4517 and its family) is fixed only from CPython
3.11.13 / 3.12.11. So trainforge unpacks member by member under its own rules:

- every member is checked before anything is written (``plan``): no absolute
  path, no ``..``, no device, fifo or other special file, no member below a
  member that is not a folder, no name twice;
- a symlink must resolve inside the target, resolved against every link in the
  archive and every link already on disk there (the chain trick goes through
  other links; a lexical check of one link at a time misses it);
- a hardlink may only name a regular file that the archive itself put earlier;
- while writing, nothing is followed: each folder is opened relative to its
  parent's descriptor with ``O_NOFOLLOW``; a file or link replaces what was
  at its name (unlinked, never followed), files are created ``O_EXCL``;
  hardlinks are made between descriptors without following;
- modes: setuid, setgid, sticky and group/other write are dropped; owners are
  never applied;
- bounded: at most ``Limits.max_members`` members, ``Limits.max_bytes`` bytes
  unpacked (and no more than the disk has free), metadata headers (pax, GNU long
  names) of at most ``Limits.max_header_bytes`` (tarfile reads them whole).

A refusal is ``UnsafeArchive`` naming the archive and the member.

Pure: ``member_parts``, ``resolve_link``, ``plan``. I/O: ``extract_tar``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import StorageError, UnsafeArchive

__all__ = ["Entry", "Limits", "extract_tar", "member_parts", "plan", "resolve_link"]

GiB = 1024**3
MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit
_CHUNK = 1024 * 1024

Parts = tuple[str, ...]
Kind = Literal["dir", "file", "symlink", "hardlink"]


@dataclass(frozen=True)
class Limits:
    """Caps against tar bombs. ``max_bytes`` counts regular files' sizes."""

    max_members: int = 100_000
    max_bytes: int = 512 * GiB
    max_header_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """What one accepted member becomes below the target."""

    kind: Kind
    parts: Parts           # normalised path components below the target
    name: str              # the member's name as in the archive (for messages)
    mode: int = 0
    size: int = 0
    mtime: float = 0.0
    link: str = ""         # symlink: target text; hardlink: the source as "a/b"


class _Refused(Exception):
    """A member is refused; turned into UnsafeArchive naming the archive."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"member {name!r} {reason}")


# -- pure ------------------------------------------------------------------------
def member_parts(name: str) -> Parts:
    """The path components of a member name; ``_Refused`` for an absolute path
    or a ``..``. ``.`` and empty components are dropped ("./a//b" is ("a", "b"))."""
    if name.startswith("/"):
        raise _Refused(name, "has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Refused(name, "has a '..' component")
    return parts


def resolve_link(start: Parts, target: str, link_at: Callable[[Parts], str | None]) -> Parts | None:
    """Where a symlink in folder ``start`` pointing at ``target`` ends up, as
    components below the root; None when it leaves the root (or loops).

    Resolved as the kernel would, one component at a time: a component that is
    itself a link (``link_at`` says so) is replaced by its target before any
    ``..`` after it is applied, so a chain of links that each look harmless is
    followed to where it really goes."""
    stack = list(start)
    pending: deque[str] = deque(target.split("/"))
    if target.startswith("/"):
        return None
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        link = link_at(tuple(stack))
        if link is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or link.startswith("/"):
            return None
        stack.pop()
        pending.extendleft(reversed(link.split("/")))
    return tuple(stack)


def _file_mode(mode: int, directory: bool) -> int:
    """No setuid/setgid/sticky, no group/other write; the owner can always read
    and write (and enter a folder), so unpacking never locks itself out."""
    return (mode & 0o755) | (0o700 if directory else 0o600)


def plan(members: Iterable[tarfile.TarInfo], limits: Limits = Limits(),
         on_disk: Callable[[Parts], str | None] = lambda parts: None) -> list[Entry]:
    """Every member checked, in archive order; ``_Refused`` for the first one
    that breaks a rule. ``on_disk`` says which paths below the target are
    already symlinks there (and to what), so links cannot chain through them."""
    entries: list[Entry] = []
    kinds: dict[Parts, Kind] = {}
    total = 0
    for count, member in enumerate(members, start=1):
        if count > limits.max_members:
            raise _Refused(member.name, f"is past the cap of {limits.max_members} members")
        parts = member_parts(member.name)
        if not parts:  # the archive's own root ("./")
            if not member.isdir():
                raise _Refused(member.name, "names the target folder itself but is not a folder")
            continue
        kind: Kind
        link = ""
        if member.isdir():
            kind = "dir"
        elif member.isreg():
            kind = "file"
            total += member.size
            if total > limits.max_bytes:
                raise _Refused(member.name, f"takes the archive past the cap of {limits.max_bytes} bytes unpacked")
        elif member.issym():
            kind, link = "symlink", member.linkname
            if not link:
                raise _Refused(member.name, "is a symlink with an empty target")
            if link.startswith("/"):
                raise _Refused(member.name, f"is a symlink to the absolute path {link!r}")
        elif member.islnk():
            kind = "hardlink"
            try:
                source = member_parts(member.linkname)
            except _Refused:
                raise _Refused(member.name, f"is a hardlink to {member.linkname!r}, outside the archive") from None
            if kinds.get(source) != "file":
                raise _Refused(member.name, f"is a hardlink to {member.linkname!r}, which is not a regular "
                                            "file earlier in the archive")
            link = "/".join(source)
        else:
            what = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                    tarfile.FIFOTYPE: "a fifo"}.get(member.type, f"of unsupported type {member.type!r}")
            raise _Refused(member.name, f"is {what}")
        previous = kinds.get(parts)
        if previous is not None and not (previous == kind == "dir"):
            raise _Refused(member.name, "appears twice in the archive")
        kinds[parts] = kind
        entries.append(Entry(kind=kind, parts=parts, name=member.name,
                             mode=_file_mode(member.mode, kind == "dir"), size=member.size if kind == "file" else 0,
                             mtime=float(member.mtime), link=link))
    by_parts = {e.parts: e for e in entries}
    for entry in entries:
        for depth in range(1, len(entry.parts) + 1):
            folder = entry.parts[:depth]
            if depth == len(entry.parts) and entry.kind != "dir":
                break  # a file or link replaces what is there; a folder would be entered
            above = kinds.get(folder)
            if above is not None and above != "dir":
                raise _Refused(entry.name, f"lies below {'/'.join(folder)!r}, which the archive makes a {above}")
            if on_disk(folder) is not None:
                raise _Refused(entry.name, f"would be written through {'/'.join(folder)!r}, "
                                           "a symlink already in the target folder")

    def link_at(parts: Parts) -> str | None:
        mine = by_parts.get(parts)
        if mine is not None:
            return mine.link if mine.kind == "symlink" else None
        return on_disk(parts)

    for entry in entries:
        if entry.kind == "symlink" and resolve_link(entry.parts[:-1], entry.link, link_at) is None:
            raise _Refused(entry.name, f"is a symlink to {entry.link!r}, which leaves the target folder")
    return entries


# -- I/O -------------------------------------------------------------------------
class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses a pax or GNU long-name header bigger than the cap before
    ``tarfile`` reads it whole into memory."""

    max_header_bytes = Limits.max_header_bytes
    _HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in self._HEADERS and self.size > self.max_header_bytes:
            raise _Refused(self.name, f"has a {self.size}-byte metadata header, over the cap of "
                                      f"{self.max_header_bytes}")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _members(tar: tarfile.TarFile) -> Iterable[tarfile.TarInfo]:
    """Members one by one, so a cap stops the walk before the rest is read."""
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _disk_links(root: Path) -> Callable[[Parts], str | None]:
    def link_at(parts: Parts) -> str | None:
        # only asked for paths whose folders are already resolved to non-links
        try:
            return os.readlink(root.joinpath(*parts))
        except OSError:  # not a link, or not there
            return None
    return link_at


def _open_dir(root_fd: int, parts: Parts, create: bool) -> int:
    """A descriptor of the folder ``parts`` below ``root_fd``, never through a
    link: each step is opened relative to its parent with O_NOFOLLOW."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _clear(name: str, dir_fd: int) -> None:
    """Remove what is at ``name`` (a file or a link, never followed) so the
    member can be created fresh; a folder there is an error."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"a folder is in the way at {name!r}")
    os.unlink(name, dir_fd=dir_fd)


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: Entry, root_fd: int) -> None:
    parent = _open_dir(root_fd, entry.parts[:-1] if entry.kind != "dir" else entry.parts, create=True)
    try:
        last = entry.parts[-1]
        if entry.kind == "dir":
            os.fchmod(parent, entry.mode)
        elif entry.kind == "file":
            _clear(last, parent)
            fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                source = tar.extractfile(member)
                if source is not None:
                    with source:
                        shutil.copyfileobj(source, out, _CHUNK)
                os.fchmod(out.fileno(), entry.mode)
                os.utime(out.fileno(), (entry.mtime, entry.mtime))
        elif entry.kind == "symlink":
            _clear(last, parent)
            os.symlink(entry.link, last, dir_fd=parent)
        else:
            source_parts = tuple(entry.link.split("/"))
            source_dir = _open_dir(root_fd, source_parts[:-1], create=False)
            try:
                _clear(last, parent)
                os.link(source_parts[-1], last, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(source_dir)
    finally:
        os.close(parent)


def extract_tar(archive: str | os.PathLike[str], target: str | os.PathLike[str], *,
                source: str | None = None, limits: Limits = Limits()) -> list[Entry]:
    """Unpack the tar (gzip or not) at ``archive`` into the folder ``target``
    under the rules above; the entries written. ``source`` names the archive in
    errors (its URI) when ``archive`` is a temporary copy. Nothing is written
    when a member is refused: every member is checked first."""
    where = source or str(archive)
    root = Path(target)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {root} to unpack {where} into: {exc.strerror or exc}") from exc

    class _Guarded(_GuardedTarInfo):
        max_header_bytes = limits.max_header_bytes

    try:
        with tarfile.open(archive, "r:*", tarinfo=_Guarded) as tar:
            members: dict[str, tarfile.TarInfo] = {}

            def listed() -> Iterable[tarfile.TarInfo]:
                for member in _members(tar):
                    members.setdefault(member.name, member)
                    yield member

            entries = plan(listed(), limits, _disk_links(root))
            needed = sum(e.size for e in entries)
            free = shutil.disk_usage(root).free
            if needed > free:
                raise UnsafeArchive(f"cannot unpack {where} into {root}: it needs {needed} bytes, "
                                    f"{free} are free")
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for entry in entries:
                    try:
                        _write(tar, members[entry.name], entry, root_fd)
                    except OSError as exc:
                        raise StorageError(f"unpacking {where} into {root}: member {entry.name!r}: "
                                           f"{exc.strerror or exc}") from exc
            finally:
                os.close(root_fd)
    except _Refused as exc:
        raise UnsafeArchive(f"refusing to unpack {where}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        # OSError and zlib.error here: a gzip stream that is corrupt or truncated
        raise StorageError(f"cannot read the archive {where}: {exc}") from exc
    return entries
