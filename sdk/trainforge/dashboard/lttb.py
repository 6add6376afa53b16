"""Largest-Triangle-Three-Buckets (Steinarsson, 2013): a curve of any length
cut to ``threshold`` points that keep its visual shape — peaks and dips
survive, unlike striding or averaging. Pure; numpy does the per-bucket work.

A long curve is first cut to the minimum and maximum of ``PRESELECT`` x
``threshold`` / 2 equal slices (MinMaxLTTB, Van Der Donckt et al., 2023): one
vectorised pass over a million points instead of LTTB's per-bucket passes over
all of them, and the extremes LTTB would pick are among those kept."""

from __future__ import annotations

import numpy as np

PRESELECT = 4  # points kept per output point before LTTB (the paper's ratio)


def lttb(x: np.ndarray, y: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``threshold`` points of (x, y) (x ascending); the first and last
    are kept. Non-finite y values are dropped first (a NaN has no place on a line)."""
    finite = np.isfinite(y)
    if not finite.all():
        x, y = x[finite], y[finite]
    n = len(x)
    if threshold >= n or threshold < 3:
        return (x, y) if threshold >= n else (x[[0, -1]] if n > 1 else x, y[[0, -1]] if n > 1 else y)
    if n > 2 * PRESELECT * threshold:
        keep = minmax_indices(y, PRESELECT * threshold)
        x, y, n = x[keep], y[keep], len(keep)
    xf = np.asarray(x, dtype=np.float64)
    yf = np.asarray(y, dtype=np.float64)
    # Bucket edges over the interior points 1 .. n-2; each bucket's "next
    # bucket" mean from running sums, all at once.
    edges = np.linspace(1, n - 1, threshold - 1).astype(np.int64)
    nstart = edges[1:]
    nend = np.maximum(np.append(edges[2:], n), nstart + 1)
    sx = np.concatenate(([0.0], np.cumsum(xf)))
    sy = np.concatenate(([0.0], np.cumsum(yf)))
    avg_x = ((sx[nend] - sx[nstart]) / (nend - nstart)).tolist()
    avg_y = ((sy[nend] - sy[nstart]) / (nend - nstart)).tolist()
    # The choice in each bucket depends on the previous one: a plain loop, over
    # at most 2 x PRESELECT x threshold points (numpy calls per bucket cost more).
    xs, ys, bounds = xf.tolist(), yf.tolist(), edges.tolist()
    out = [0]
    a = 0
    for i in range(threshold - 2):
        lo, hi = bounds[i], max(bounds[i + 1], bounds[i] + 1)
        ax, ay = xs[a], ys[a]
        dx, dy = ax - avg_x[i], avg_y[i] - ay
        best, best_area = lo, -1.0
        for j in range(lo, hi):
            # Twice the triangle area (a, candidate, next bucket's mean).
            area = abs(dx * (ys[j] - ay) - (ax - xs[j]) * dy)
            if area > best_area:
                best, best_area = j, area
        out.append(best)
        a = best
    out.append(n - 1)
    return x[out], y[out]


def minmax_indices(y: np.ndarray, count: int) -> np.ndarray:
    """About ``count`` indices of ``y``, ascending: the ends, and the min and the
    max of each of ``count`` / 2 equal slices of the points between them (a
    remainder shorter than a slice is kept whole)."""
    n = len(y)
    slices = max(1, count // 2)
    size = (n - 2) // slices
    if size < 2:
        return np.arange(n)
    used = size * slices
    blocks = np.asarray(y[1:1 + used]).reshape(slices, size)
    base = 1 + np.arange(slices) * size
    return np.unique(np.concatenate(([0], base + blocks.argmin(axis=1), base + blocks.argmax(axis=1),
                                     np.arange(1 + used, n))))
