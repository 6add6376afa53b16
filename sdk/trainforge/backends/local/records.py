"""A local job's metric series: regex records scraped from its logs plus the
structured records the trainer wrote with ``runtime.log_metric``."""

from __future__ import annotations

import os

from ... import untrusted
from ...metrics import MetricRecord, parse_records, read_records
from .jobdir import JobDir

LOGGED_METRICS_LIMIT = 64 << 20  # bytes of the trainer's metrics file read


def merge_records(scraped: list[MetricRecord], logged: list[MetricRecord]) -> list[MetricRecord]:
    """Structured records win over scraped ones of the same name (no doubles)."""
    logged_names = {r.name for r in logged}
    merged = [r for r in scraped if r.name not in logged_names] + logged
    return sorted(merged, key=lambda r: (r.timestamp, r.name))


def job_metric_records(jobdir: JobDir) -> list[MetricRecord]:
    scraped = read_records(jobdir.metrics_file) if jobdir.metrics_file.exists() else []
    return merge_records(scraped, logged_records(jobdir))


def logged_records(jobdir: JobDir) -> list[MetricRecord]:
    """The trainer's own metrics file, in its run folder: read without
    following a link it may have planted there."""
    layout = jobdir.layout
    raw = untrusted.read_file(layout.root, os.path.relpath(layout.metrics_file, layout.root),
                              limit=LOGGED_METRICS_LIMIT)
    return parse_records(raw.decode("utf-8", errors="replace"), source=layout.metrics_file) if raw else []
