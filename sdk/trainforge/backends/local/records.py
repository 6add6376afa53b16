"""A local job's metric series: regex records scraped from its logs plus the
structured records the trainer wrote with ``runtime.log_metric``."""

from __future__ import annotations

import os

from ...metrics import MetricRecord, read_records
from .jobdir import JobDir


def merge_records(scraped: list[MetricRecord], logged: list[MetricRecord]) -> list[MetricRecord]:
    """Structured records win over scraped ones of the same name (no doubles)."""
    logged_names = {r.name for r in logged}
    merged = [r for r in scraped if r.name not in logged_names] + logged
    return sorted(merged, key=lambda r: (r.timestamp, r.name))


def job_metric_records(jobdir: JobDir) -> list[MetricRecord]:
    scraped = read_records(jobdir.metrics_file) if jobdir.metrics_file.exists() else []
    logged_file = jobdir.layout.metrics_file
    logged = read_records(logged_file) if os.path.exists(logged_file) else []
    return merge_records(scraped, logged)
