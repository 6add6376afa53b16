"""The web dashboard (``trainforge ui``): runs, curves, logs and tuning jobs
in a browser. It reads only through the client and backends, so the same
pages serve local jobs and a cluster; every asset ships in the package.

    index.py    the summary index: one row per run, refreshed by mtime (local) or TTL
    query.py    filter, sort, paginate and project index rows (pure)
    lttb.py     Largest-Triangle-Three-Buckets downsampling of curves (pure)
    api.py      the JSON API: one function per endpoint, over the index and backends
    server.py   the HTTP server: routing, static files, SSE, CSP and the CSRF guard
"""

from __future__ import annotations

__all__: list[str] = []
