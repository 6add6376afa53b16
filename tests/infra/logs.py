"""Where a test session keeps its servers' files, and how their logs are shown.

Layout: <session>/run/ (data dirs, sockets, certificates; always removed) and
<session>/logs/ (one file per server; kept when the session fails).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .binaries import log_tail

KEEP_ENV = "TRAINFORGE_KEEP_TEST_LOGS"  # set to 1 to keep logs of passing sessions too
DIR_ENV = "TRAINFORGE_TEST_LOGS"  # parent folder for session folders (default: $TMPDIR)


def new_session_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    parent = env.get(DIR_ENV) or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    # Short prefix under /tmp: the Podman socket lives below it (108-byte limit).
    return Path(tempfile.mkdtemp(prefix="tf-test-", dir=parent))


def format_tails(files: Iterable[Path], lines: int = 25) -> str:
    parts = []
    for path in files:
        if path.exists():
            parts.append(f"==> {path} (last {lines} lines) <==\n{log_tail(path, lines)}")
    return "\n\n".join(parts)


def finish_session(session_dir: Path, failed: bool, env: Mapping[str, str] | None = None) -> bool:
    """Remove the run data, and the logs unless the session failed; True if logs were kept."""
    env = os.environ if env is None else env
    shutil.rmtree(session_dir / "run", ignore_errors=True)
    keep = failed or env.get(KEEP_ENV, "") not in ("", "0", "false")
    if not keep:
        shutil.rmtree(session_dir, ignore_errors=True)
    return keep
