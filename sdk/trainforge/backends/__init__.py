"""Where jobs run: ``process`` and ``container`` on this machine, ``kubernetes`` on a cluster."""

from __future__ import annotations

from ..config import Settings
from .base import Backend

__all__ = ["Backend", "get_backend"]


def get_backend(name: str | None = None, settings: Settings | None = None, **options: str) -> Backend:
    from ..config import load_settings

    settings = settings or load_settings()
    name = name or settings.backend
    if name in ("process", "container"):
        from .local.backend import LocalBackend

        return LocalBackend(name, settings, **options)
    if name == "kubernetes":
        from .kubernetes import KubernetesBackend

        return KubernetesBackend(settings, **options)  # type: ignore[no-any-return]
    raise ValueError(f"unknown backend {name!r} (expected process, container or kubernetes)")
