"""The observed state, held in memory: what the watches have delivered.

One ``Store`` per kind (TrainingJobs, batch Jobs, pods), filled by a LIST and
kept current by the watch that resumes from it, like client-go's informers. A
reconcile pass reads here, so it makes no GET or LIST of its own. Objects are
plain API dicts (camelCase), indexed by a label so that a TrainingJob's
attempts, or an attempt's pods, are one dictionary lookup.

The cache may lag the apiserver: a Job just created may not be here yet. The
reconciler copes the usual way: deterministic names, AlreadyExists is success.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from trainforge.names import JOB_NAME_LABEL, TRAINING_KIND, TUNING_JOB_LABEL, TUNING_KIND

Key = tuple[str, str]
Obj = dict[str, Any]

POD_JOB_LABEL = "job-name"  # set by the Job controller on every pod of a Job
WORKLOAD_KIND = "Workload"  # Kueue's, one per queued batch Job
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"  # Kueue's API (its storage version)


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta["namespace"], meta["name"]


def _version(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:  # opaque to clients in principle; etcd's revisions in practice
        return 0


class Store:
    """Objects by (namespace, name), and by (namespace, value of ``index_label``)."""

    def __init__(self, index_label: str | None = None, trim: Callable[[Obj], Obj] | None = None,
                 index_of: Callable[[Obj], str | None] | None = None):
        self.index_label = index_label
        self.index_of = index_of  # instead of a label: any value derived from the object
        self.trim = trim or strip_managed_fields
        self._lock = threading.Lock()
        self._objects: dict[Key, Obj] = {}
        self._index: dict[Key, dict[str, Obj]] = {}
        self._synced = threading.Event()

    # -- writes (the watch) ---------------------------------------------------
    def replace(self, items: list[Obj]) -> None:
        """A fresh LIST: the whole state, objects gone since are dropped."""
        with self._lock:
            self._objects, self._index = {}, {}
            for obj in items:
                self._put(obj)
        self._synced.set()

    def upsert(self, obj: Obj, newer_only: bool = False) -> None:
        """``newer_only``: keep what is held when it is at least as new (a write's
        response racing its own watch event)."""
        with self._lock:
            held = self._objects.get(key_of(obj))
            if newer_only and held is not None and _version(held) >= _version(obj):
                return
            if held is not None:
                self._unindex(held)
            self._put(obj)

    def delete(self, obj: Obj) -> None:
        """Drop ``obj``; not a newer object of the same name (another uid)."""
        uid = obj["metadata"].get("uid")
        with self._lock:
            held = self._objects.get(key_of(obj))
            if held is None or (uid and held["metadata"].get("uid") not in (None, uid)):
                return
            del self._objects[key_of(obj)]
            self._unindex(held)

    def _put(self, obj: Obj) -> None:
        obj = self.trim(obj)
        key = key_of(obj)
        self._objects[key] = obj
        value = self._label(obj)
        if value is not None:
            self._index.setdefault((key[0], value), {})[key[1]] = obj

    def _unindex(self, obj: Obj) -> None:
        value = self._label(obj)
        if value is None:
            return
        ns, name = key_of(obj)
        bucket = self._index.get((ns, value))
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self._index[(ns, value)]

    def _label(self, obj: Obj) -> str | None:
        if self.index_of is not None:
            return self.index_of(obj)
        if self.index_label is None:
            return None
        value = (obj["metadata"].get("labels") or {}).get(self.index_label)
        return str(value) if value is not None else None

    # -- reads (the reconciler) -------------------------------------------------
    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def by_label(self, namespace: str, value: str) -> list[Obj]:
        with self._lock:
            return list(self._index.get((namespace, value), {}).values())

    def all_keys(self) -> list[Key]:
        with self._lock:
            return list(self._objects)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, stop: threading.Event, poll: float = 0.2) -> bool:
        while not stop.is_set():
            if self._synced.wait(poll):
                return True
        return False


# -- what is kept: less memory per object; what the reconciler reads stays ---------
# Like controller-runtime's cache transforms (TransformStripManagedFields). A
# field dropped here reads as absent in ``status.decide``: keep it in step.
def strip_managed_fields(obj: Obj) -> Obj:
    obj["metadata"].pop("managedFields", None)
    return obj


def trim_job(obj: Obj) -> Obj:
    """A batch Job less its pod template (the reconciler reads ``spec.suspend``)."""
    (obj.get("spec") or {}).pop("template", None)
    return strip_managed_fields(obj)


def trim_pod(obj: Obj) -> Obj:
    """A pod's spec is only ``nodeName`` here (``status.pod_phase``)."""
    node = (obj.get("spec") or {}).get("nodeName")
    obj["spec"] = {"nodeName": node} if node else {}
    return strip_managed_fields(obj)


def workload_job(obj: Obj) -> str | None:
    """The name of the batch Job a Kueue Workload stands for (its controller owner)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            return str(ref.get("name"))
    return None


def trim_workload(obj: Obj) -> Obj:
    """A Kueue Workload as ``status.kueue_state`` reads it: whether it is active,
    its queue, its conditions and the ClusterQueue that admitted it; not its
    pod sets (a whole pod template each)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    meta = obj["metadata"]
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "ownerReferences",
                                          "deletionTimestamp") if k in meta},
        "spec": {k: spec[k] for k in ("active", "queueName") if k in spec},
        "status": {"conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                                  for c in status.get("conditions") or []],
                   "clusterQueue": (status.get("admission") or {}).get("clusterQueue")},
    }


# -- which changes matter: a watch event that changes none of this queues nothing --
def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def training_job_mark(obj: Obj) -> str:
    """Spec (generation), annotations, labels, deletion: not the status, which
    the controller writes itself (and which would otherwise queue every job
    again after each pass)."""
    meta = obj["metadata"]
    return _dumps([meta.get("uid"), meta.get("generation"), meta.get("annotations"), meta.get("labels"),
                   meta.get("deletionTimestamp")])


def trial_mark(obj: Obj) -> str:
    """What the TuningJob reconciler reads of a trial from its object: its
    labels, annotations, phase and final metrics (the series is in the store)."""
    meta, status = obj["metadata"], obj.get("status") or {}
    return _dumps([meta.get("uid"), meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"),
                   status.get("phase"), status.get("finalMetrics")])


_JOB_COUNTERS = frozenset({"ready", "terminating", "uncountedTerminatedPods", "failed", "succeeded"})


def job_mark(obj: Obj) -> str:
    """What ``status.decide`` reads of an attempt's Job: labels, spec, start,
    completion, conditions and ``active``; not the other pod counters the Job
    controller keeps."""
    meta, status = obj["metadata"], obj.get("status") or {}
    return _dumps([meta.get("uid"), meta.get("generation"), meta.get("labels"), meta.get("deletionTimestamp"),
                   {k: v for k, v in status.items() if k not in _JOB_COUNTERS}])


def pod_mark(obj: Obj) -> str:
    """What ``status.decide`` and the log archive read of a pod: labels, node,
    phase, message, scheduling, eviction, and each container's state."""
    meta, status = obj["metadata"], obj.get("status") or {}
    scheduled = [c for c in status.get("conditions") or [] if c.get("type") in ("PodScheduled", "DisruptionTarget")]
    states = {key: [(s.get("name"), s.get("state")) for s in status.get(key) or []]
              for key in ("containerStatuses", "initContainerStatuses")}
    return _dumps([meta.get("uid"), meta.get("labels"), meta.get("deletionTimestamp"),
                   (obj.get("spec") or {}).get("nodeName"), status.get("phase"), status.get("message"),
                   status.get("reason"), [(c.get("status"), c.get("message")) for c in scheduled], states])



def workload_mark(obj: Obj) -> str:
    """What ``status.decide`` reads of a Workload: what ``trim_workload`` keeps."""
    trimmed = trim_workload(obj)
    trimmed["metadata"].pop("resourceVersion", None)
    return _dumps(trimmed)


class Cache:
    """The stores a reconcile pass reads, one per kind its informers fill
    (``register``). The TrainingJob reconciler reads TrainingJobs, batch Jobs
    by the TrainingJob they belong to, pods by their attempt's Job
    (``job-name``) and Kueue's Workloads by their Job. The TuningJob reconciler reads TuningJobs and TrainingJobs
    by their tuning job (the same store, indexed by ``trainforge.dev/tuning-job``)."""

    def __init__(self, kueue: bool = False) -> None:
        self.stores: dict[str, Store] = {}
        self.training_jobs = self.register(TRAINING_KIND, Store(index_label=TUNING_JOB_LABEL))
        self.jobs = self.register("Job", Store(index_label=JOB_NAME_LABEL, trim=trim_job))
        self.pods = self.register("Pod", Store(index_label=POD_JOB_LABEL, trim=trim_pod))
        self.tuning_jobs = self.register(TUNING_KIND, Store())
        # Kueue's Workloads by their Job: watched only with Kueue integration on
        # (settings.kueue); else never filled, and not waited for.
        self.workloads = Store(index_of=workload_job, trim=trim_workload)
        if kueue:
            self.register(WORKLOAD_KIND, self.workloads)

    def register(self, kind: str, store: Store) -> Store:
        if kind in self.stores:
            raise ValueError(f"a store for {kind} is registered already")
        self.stores[kind] = store
        return store

    def store(self, kind: str) -> Store:
        return self.stores[kind]

    @property
    def synced(self) -> bool:
        return all(s.synced for s in self.stores.values())

    def wait_synced(self, stop: threading.Event) -> bool:
        return all(s.wait_synced(stop) for s in list(self.stores.values()))
