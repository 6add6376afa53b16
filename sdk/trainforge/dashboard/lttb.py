"""Largest-Triangle-Three-Buckets (Steinarsson, 2013): a curve of any length
cut to ``threshold`` points that keep its visual shape — peaks and dips
survive, unlike striding or averaging. Pure; numpy does the per-bucket work."""

from __future__ import annotations

import numpy as np


def lttb(x: np.ndarray, y: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``threshold`` points of (x, y) (x ascending); the first and last
    are kept. Non-finite y values are dropped first (a NaN has no place on a line)."""
    finite = np.isfinite(y)
    if not finite.all():
        x, y = x[finite], y[finite]
    n = len(x)
    if threshold >= n or threshold < 3:
        return (x, y) if threshold >= n else (x[[0, -1]] if n > 1 else x, y[[0, -1]] if n > 1 else y)
    xf = x.astype(np.float64, copy=False)
    yf = y.astype(np.float64, copy=False)
    # Bucket edges over the interior points 1 .. n-2.
    edges = np.linspace(1, n - 1, threshold - 1).astype(np.int64)
    out = np.empty(threshold, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    a = 0
    for i in range(threshold - 2):
        start, end = edges[i], max(edges[i + 1], edges[i] + 1)
        nstart, nend = edges[i + 1], (edges[i + 2] if i + 2 < len(edges) else n)
        nend = max(nend, nstart + 1)
        avg_x = xf[nstart:nend].mean()
        avg_y = yf[nstart:nend].mean()
        ax, ay = xf[a], yf[a]
        # Twice the triangle area (a, candidate, next bucket's mean), for each candidate.
        area = np.abs((ax - avg_x) * (yf[start:end] - ay) - (ax - xf[start:end]) * (avg_y - ay))
        a = start + int(area.argmax())
        out[i + 1] = a
    return x[out], y[out]
