"""Checkpoints that survive a kill at any instant.

Write through ``atomic_write`` (a hidden temporary file in the same folder,
fsync, then ``os.replace``), so the checkpoint folder only ever holds complete
files; names starting with "." are temporary and skipped by ``latest_checkpoint``
(and by the checkpoint sync).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .environment import checkpoint_dir as _checkpoint_dir

_NUMBER = re.compile(r"\d+")


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces
    ``path`` in one step, on an exception it is removed and ``path`` is untouched.

        with runtime.atomic_write(runtime.checkpoint_dir() / "epoch-0003.pt") as f:
            torch.save(state, f)
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode ('w' or 'wb'), got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    encoding = None if "b" in mode else "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible everywhere
        fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _order(path: Path) -> tuple[int, float, str]:
    # By the last number in the name (epoch-0012.pt after epoch-0009.pt), then by
    # modification time: a restored checkpoint folder carries download times.
    numbers = _NUMBER.findall(path.stem)
    return (int(numbers[-1]) if numbers else -1, path.stat().st_mtime, path.name)


def list_checkpoints(pattern: str = "*.pt", directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Complete checkpoint files matching ``pattern``, oldest first."""
    folder = Path(directory) if directory is not None else _checkpoint_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=_order)


def latest_checkpoint(pattern: str = "*.pt", directory: str | os.PathLike[str] | None = None) -> Path | None:
    """The newest checkpoint in the checkpoint folder (or ``directory``), or None."""
    files = list_checkpoints(pattern, directory)
    return files[-1] if files else None


def prune_checkpoints(keep: int, pattern: str = "*.pt", directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove all but the newest ``keep`` checkpoints; returns those removed."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    old = list_checkpoints(pattern, directory)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old
