"""A local job's metric series: regex records scraped from its logs plus the
structured records the trainer wrote with ``runtime.log_metric``."""

from __future__ import annotations

import os

from ... import untrusted
from ...metrics import MetricRecord, read_record_stream, read_records
from .jobdir import JobDir


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
    folder, name = os.path.split(os.path.relpath(layout.metrics_file, layout.root))
    try:
        with untrusted.opened_dir(layout.root, folder) as dir_fd:
            handle = untrusted.open_regular(dir_fd, name, layout.metrics_file)
            if handle is None:
                return []
            with handle:  # streamed: bounded memory whatever the trainer wrote
                return read_record_stream(handle, layout.metrics_file)
    except (FileNotFoundError, untrusted.UnsafePath):
        return []
