"""Trainer logs into the object store, once per attempt and host, and the job's
regex metrics folded into its archived metrics file.

The stager sidecar uploads the runtime's ``metrics.jsonl``; nothing in a pod
keeps the trainer's stdout, and a pod's log goes with the pod. So when a
reconcile pass sees a pod whose trainer has terminated, the trainer container's
log is read once (one GET, no follow: the controller holds no stream between
passes) and written to ``ArtifactURIs.log(host, attempt)``. The key is
deterministic and an existing object is never fetched again, so a restarted
controller does not redo the work. A pod being deleted (a stop, an eviction,
the deadline) may lose its containers, and their logs, within a second of its
trainer's end: its log is read as soon as the deletion is seen, and once more
when the trainer has ended (the kubelet's "unable to retrieve container logs"
and "failed to try resolving symlinks" answers are never archived).

When the job's verdict is final, the job's metric regexes are applied to host
1's archived log of the last attempt and the records merged into the job's
``metrics.jsonl``; records the trainer wrote with ``runtime.log_metric`` win
over scraped ones of the same name (``merge_records``, as on the local
backends). Merging what is already merged changes nothing, so this is
idempotent too.

The regexes are the submitter's, and so is the log: folding is bounded and
off the workers' path. RE2 makes each search linear in its text whatever the
pattern; only the log's last ``FOLD_MAX_BYTES`` and ``FOLD_MAX_LINES`` lines
are read, each line searched in its first 64 Ki characters
(``MetricParser``), and at most ``FOLD_MAX_RECORDS`` scraped records kept:
at worst 40 patterns x 100 000 lines (or x 4 MiB of text): about a minute
of one busy CPU, whatever the patterns, spent on the Archiver's one fold
thread (folds queue there, one job after another). The reconcile pass that
would write the final verdict waits for its fold at most
``FOLD_WAIT_SECONDS``, then requeues itself, so a worker, the watches and
the lease renewal are never held by a fold; only that job's verdict waits.

Pure: ``trainer_done``, ``logs_to_archive``, ``needs_fold``, ``fold``.
I/O: ``Archiver``, called by the reconciler before it writes the status.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from trainforge.backends.local.records import merge_records
from trainforge.errors import TrainforgeError
from trainforge.metrics import MetricParser, MetricRecord, read_stored_records
from trainforge.spec import TrainingJob
from trainforge.spec.models import MetricDefinition
from trainforge.staging import ArtifactURIs
from trainforge.storage import ObjectStore

from .builder import ATTEMPT_LABEL, INDEX_LABEL, TRAINER
from .status import Decision, Observed, attempt_of, job_condition

log = logging.getLogger("trainforge.controller.archive")

LogReader = Callable[[dict[str, Any], str], str]
"""(pod as an API dict, container name) -> that container's whole log."""

JobStoreOpener = Callable[[TrainingJob, str], "ObjectStore | None"]
"""(job, uri) -> the store to reach ``uri`` with on the job's behalf; None: not
to be touched (credentials.JobCredentials.store)."""

FOLD_MAX_BYTES = 4 * 1024 * 1024
FOLD_MAX_LINES = 100_000
FOLD_MAX_RECORDS = 100_000
FOLD_POLL_SECONDS = 1.0
FOLD_WAIT_SECONDS = 0.5  # what a worker waits for a fold before it requeues the job


# What the kubelet answers, as the log's text (HTTP 200), once a container or
# its log file is removed: never archived, and never over an early copy.
KUBELET_NO_LOG = ("unable to retrieve container logs for ", "failed to try resolving symlinks in path ")


@dataclass(frozen=True)
class PodLog:
    """One pod's trainer log and where it is archived. ``final``: the trainer
    has ended, so the log is whole; else the pod is being deleted (a stop, an
    eviction, the deadline) and the log is read now, while it can be, and read
    again once the trainer ends."""

    pod: dict[str, Any]
    host: str
    attempt: int
    uri: str
    final: bool = True


def host_name(index: int) -> str:
    """The contract's name of host ``index`` (0-based): ``contract.host_names``."""
    return f"algo-{index + 1}"


# -- pure ----------------------------------------------------------------------
def trainer_done(pod: dict[str, Any]) -> bool:
    """The pod is over, or its trainer container has terminated."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    return any(s.get("name") == TRAINER and "terminated" in (s.get("state") or {})
               for s in status.get("containerStatuses") or [])


def being_deleted(pod: dict[str, Any]) -> bool:
    """The pod has a deletion timestamp: its containers, and their logs, go soon."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def logs_to_archive(pods: Iterable[dict[str, Any]], artifacts: ArtifactURIs) -> list[PodLog]:
    """The pods whose trainer log belongs in the store now (whether it is there
    already is the store's to say): the trainer has ended, or the pod is being
    deleted (then ``final`` is False). Pods without the index or attempt label
    are not ours to name."""
    out = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        index, attempt = labels.get(INDEX_LABEL), labels.get(ATTEMPT_LABEL)
        done = trainer_done(pod)
        if not (done or being_deleted(pod)) or index is None or attempt is None:
            continue
        try:
            host, number = host_name(int(index)), int(attempt)
        except ValueError:
            continue
        out.append(PodLog(pod=pod, host=host, attempt=number, uri=artifacts.log(host, number), final=done))
    return sorted(out, key=lambda p: p.uri)


def needs_fold(job: TrainingJob, observed: Observed, decision: Decision) -> bool:
    """This pass makes the verdict final, and the job has regexes to apply. Only
    then: a retried attempt's log must not lend its values to the next one."""
    previous = job.status.phase.finished if job.status else False
    if not job.spec.metrics or previous or not decision.status.phase.finished or not observed.jobs:
        return False
    latest = max(observed.jobs, key=attempt_of)
    return bool(job_condition(latest, "Complete") or job_condition(latest, "Failed"))


def fold(definitions: Iterable[MetricDefinition], log_text: str, logged: list[MetricRecord],
         timestamp: float, max_lines: int = FOLD_MAX_LINES,
         max_records: int = FOLD_MAX_RECORDS) -> list[MetricRecord]:
    """The job's metric series: the regexes applied to ``log_text`` (each record
    stamped ``timestamp``: an archived log has no time per line) merged with
    the ``logged`` records, which win on a name they share. Bounded: the last
    ``max_lines`` lines only, the last ``max_records`` scraped records kept."""
    parser = MetricParser(definitions)
    scraped: deque[MetricRecord] = deque(maxlen=max_records)
    for line in log_text.splitlines()[-max_lines:]:
        scraped.extend(parser.feed(line, timestamp))
    return merge_records(list(scraped), logged)


# -- I/O -------------------------------------------------------------------------
class Archiver:
    """Archives trainer logs and folds regex metrics; a store or log read that
    fails is logged, never raised: it must not block the job's verdict."""

    def __init__(self, core: client.CoreV1Api, store_opener: JobStoreOpener,
                 read_log: LogReader | None = None, timeout_seconds: float = 30.0):
        self.core = core
        self.store_opener = store_opener
        self.read_log = read_log or self._api_log
        self.timeout_seconds = timeout_seconds
        self._folder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainforge-fold")
        self._folds: dict[str, Future[bool]] = {}  # by the log folded
        self._folds_lock = threading.Lock()
        # Logs archived before their trainer ended, to be read once more when it
        # has (in memory: after a restart the early copy stays).
        self._partial: set[str] = set()

    def _api_log(self, pod: dict[str, Any], container: str) -> str:
        """One GET of the whole log (the kubelet's current file), bytes decoded
        leniently: the client's own decoding raises on invalid UTF-8."""
        meta = pod["metadata"]
        response: Any = self.core.read_namespaced_pod_log(  # urllib3's response, not a str
            meta["name"], meta["namespace"], container=container, _preload_content=False,
            _request_timeout=self.timeout_seconds)
        return bytes(response.data).decode("utf-8", "replace")

    def archive_logs(self, job: TrainingJob, observed: Observed) -> int:
        """Write the trainer log of every observed pod that is done and not yet
        archived; the number written. Nothing for a job already finished. A pod
        with no log to read (no kubelet, as under kwok, or already gone) gets no
        object: nothing is made up."""
        artifacts = observed.artifacts
        if artifacts is None or (job.status and job.status.phase.finished):
            return 0
        todo = logs_to_archive(observed.pods, artifacts)
        if not todo:
            return 0
        written = 0
        try:
            store = self.store_opener(job, artifacts.logs)
            if store is None:
                log.warning("%s/%s: no credentials of its own to archive its logs to %s",
                            job.metadata.namespace, job.name, artifacts.logs)
                return 0
            for item in todo:
                again = item.final and item.uri in self._partial
                if not again and store.exists(item.uri):
                    continue
                meta = item.pod["metadata"]
                try:
                    text = self.read_log(item.pod, TRAINER)
                except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
                    log.debug("no trainer log for %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)
                    continue
                if text.startswith(KUBELET_NO_LOG):  # the container is gone: nothing (more) to read
                    self._partial.discard(item.uri)
                    continue
                store.write_bytes(item.uri, text.encode("utf-8"))
                if item.final:
                    self._partial.discard(item.uri)
                else:
                    self._partial.add(item.uri)
                written += 1
        except TrainforgeError as exc:
            log.warning("archiving trainer logs to %s: %s", artifacts.logs, exc)
        return written

    def fold_metrics(self, job: TrainingJob, observed: Observed, decision: Decision) -> bool | None:
        """When ``decision`` is the final verdict, merge the regex metrics of the
        last attempt's host-1 log into the archived metrics file; True when the
        file changed (so the final values must be read again), None while the
        fold runs on the fold thread (the caller holds the verdict and comes
        back: see the module docstring)."""
        artifacts = observed.artifacts
        if artifacts is None or not needs_fold(job, observed, decision):
            return False
        source = artifacts.log(host_name(0), max(attempt_of(j) for j in observed.jobs))
        with self._folds_lock:
            future = self._folds.get(source)
            if future is None:
                future = self._folds[source] = self._folder.submit(
                    self._fold, job, artifacts, source, observed.now.timestamp())
        wait([future], timeout=FOLD_WAIT_SECONDS)  # most logs are small: done by now
        with self._folds_lock:
            if not future.done():
                return None
            self._folds.pop(source, None)
        return future.result()

    def _fold(self, job: TrainingJob, artifacts: ArtifactURIs, source: str, timestamp: float) -> bool:
        try:
            store = self.store_opener(job, artifacts.metrics)
            if store is None or not store.exists(source):
                return False
            data, size = store.read_tail(source, FOLD_MAX_BYTES)
            text = data.decode("utf-8", "replace")
            if size > len(data):  # the first line is cut
                text = text.partition("\n")[2]
            logged = read_stored_records(store, artifacts.metrics) if store.exists(artifacts.metrics) else []
            merged = fold(job.spec.metrics, text, logged, timestamp)
            if merged == merge_records([], logged):  # nothing new: already folded, or no match
                return False
            store.write_bytes(artifacts.metrics, "".join(r.to_json() + "\n" for r in merged).encode())
            return True
        except (TrainforgeError, ValueError) as exc:  # ValueError: a regex the spec let through
            log.warning("folding regex metrics of %s/%s into %s: %s", job.metadata.namespace,
                        job.name, artifacts.metrics, exc)
            return False
