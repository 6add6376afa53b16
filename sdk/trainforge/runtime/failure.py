"""The failure file: its first 1024 characters become the job's failure reason."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from ..contract import FAILURE_REASON_LIMIT
from ._files import writable_target
from .environment import current


def describe_exception(exc: BaseException, frames: int = 5) -> str:
    """``Type: message`` then the innermost frames, one short line each, so the
    reason stays readable when cut to 1024 characters."""
    message = str(exc).strip()
    lines = [f"{type(exc).__name__}: {message}" if message else type(exc).__name__]
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    lines.extend(f"  at {frame.filename}:{frame.lineno} in {frame.name}" for frame in reversed(stack))
    return "\n".join(lines)


def write_failure(reason: str | BaseException) -> Path | None:
    """Write the failure file (the reason a person will read in the job's status).

    ``reason`` is a message or an exception (described with its innermost
    frames). Only the first 1024 characters are kept. Returns the file written,
    or None when there is no contract tree (the reason is printed to stderr)."""
    text = describe_exception(reason) if isinstance(reason, BaseException) else str(reason)
    text = text[:FAILURE_REASON_LIMIT]
    env = current()
    path = env.failure_file
    if writable_target(path, env.root):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError as exc:
            print(f"trainforge: cannot write the failure file {path}: {exc}", file=sys.stderr)
    print(f"trainforge: failure: {text}", file=sys.stderr, flush=True)
    return None
