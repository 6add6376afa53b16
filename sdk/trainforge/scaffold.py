"""``trainforge init NAME``: a new trainer project that builds and runs as is.

    NAME/
        trainer/__init__.py
        trainer/start.py     a complete small trainer on trainforge.runtime
        Dockerfile           FROM the trainforge base image
        .dockerignore
        requirements.txt
        job.json             a TrainingJob for the image NAME:latest
        README.md

The files come from ``templates/scaffold/`` beside this module; ``{{name}}``,
``{{image}}`` and ``{{base_image}}`` in them are filled in. Nothing is
overwritten: an existing non-empty folder is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ScaffoldError

__all__ = ["DEFAULT_BASE_IMAGE", "TEMPLATE_DIR", "init"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "scaffold"
DEFAULT_BASE_IMAGE = "trainforge/pytorch-cpu:latest"
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_SKIP = {"__pycache__"}


def _template_files() -> list[Path]:
    files = [p for p in sorted(TEMPLATE_DIR.rglob("*"))
             if p.is_file() and not _SKIP.intersection(p.relative_to(TEMPLATE_DIR).parts)
             and p.suffix != ".pyc"]
    if not files:
        raise ScaffoldError(f"the scaffold templates are missing from {TEMPLATE_DIR} (a broken install?)")
    return files


def init(name: str, directory: str | os.PathLike[str] | None = None, *,
         base_image: str = DEFAULT_BASE_IMAGE, image: str | None = None) -> Path:
    """Create the project ``name`` in ``directory`` (default: ``./NAME``) and
    return its folder. ``image`` is the tag job.json runs (default ``NAME:latest``)."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"project name {name!r} must be lower-case letters, digits and '-', start with a letter "
            "and be at most 63 characters (it names the image and the jobs)")
    target = Path(directory if directory is not None else name).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; pick another name or folder")
    values = {"name": name, "image": image or f"{name}:latest", "base_image": base_image}
    files = _template_files()
    try:
        for source in files:
            relative = source.relative_to(TEMPLATE_DIR)
            text = source.read_text(encoding="utf-8")
            for key, value in values.items():
                text = text.replace("{{" + key + "}}", value)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScaffoldError(f"cannot create the project in {target}: {exc}") from exc
    return target
