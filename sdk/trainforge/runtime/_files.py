"""Where the runtime may write when there might be no contract tree at all."""

from __future__ import annotations

from pathlib import Path


def writable_target(path: Path, root: Path) -> bool:
    """Whether to write ``path``: yes inside an existing contract root (missing
    folders are made) or into an existing folder elsewhere; no when the root is
    absent (a trainer run by hand on a laptop), so nothing appears under /opt/ml."""
    if path.parent.is_dir():
        return True
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return root.is_dir()
