"""trainforge: bring-your-own-container training on Kubernetes and MinIO,
with a local mode that needs no cluster and no server."""

from __future__ import annotations

__version__ = "0.1.0"
