"""cache: the stores a reconcile pass reads, and which watch events queue a pass. No API."""

from __future__ import annotations

from typing import Any

import pytest

from trainforge_controller.cache import Cache, Store, job_mark, pod_mark, training_job_mark


def _obj(name: str, version: int, uid: str = "u1", ns: str = "ns", labels: dict[str, str] | None = None,
         **rest: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "uid": uid, "resourceVersion": str(version),
                         "labels": labels or {}}, **rest}


def test_index_follows_label_changes_and_deletes() -> None:
    store = Store(index_label="owner")
    store.upsert(_obj("a", 1, labels={"owner": "tj"}))
    store.upsert(_obj("b", 2, labels={"owner": "tj"}))
    store.upsert(_obj("c", 3, labels={"owner": "tj"}, ns="other"))
    assert sorted(o["metadata"]["name"] for o in store.by_label("ns", "tj")) == ["a", "b"]
    store.upsert(_obj("b", 4, labels={"owner": "tj2"}))
    assert [o["metadata"]["name"] for o in store.by_label("ns", "tj")] == ["a"]
    store.delete(_obj("a", 5))
    assert store.by_label("ns", "tj") == [] and store.get("ns", "a") is None
    assert [o["metadata"]["name"] for o in store.by_label("ns", "tj2")] == ["b"]


def test_newer_only_keeps_a_write_response_over_an_older_event() -> None:
    store = Store()
    store.upsert(_obj("a", 10, status={"phase": "Pending"}))
    store.upsert(_obj("a", 9, status={"phase": "(stale)"}), newer_only=True)
    assert store.get("ns", "a")["status"] == {"phase": "Pending"}  # type: ignore[index]
    store.upsert(_obj("a", 11, status={"phase": "Queued"}), newer_only=True)
    assert store.get("ns", "a")["status"] == {"phase": "Queued"}  # type: ignore[index]


def test_delete_spares_a_recreated_object_and_replace_drops_the_gone() -> None:
    store = Store()
    store.upsert(_obj("a", 1, uid="new"))
    store.delete(_obj("a", 1, uid="old"))
    assert store.get("ns", "a") is not None
    store.replace([_obj("b", 2)])
    assert store.get("ns", "a") is None and store.get("ns", "b") is not None and store.synced


@pytest.mark.parametrize(("mark", "before", "after", "queues"), [
    (training_job_mark, _obj("t", 1, status={"phase": "Pending"}), _obj("t", 2, status={"phase": "Queued"}), False),
    (training_job_mark, _obj("t", 1), {**_obj("t", 2), "metadata": {**_obj("t", 2)["metadata"], "generation": 2}},
     True),
    (job_mark, _obj("j", 1, status={"active": 1}), _obj("j", 2, status={"active": 1, "ready": 1}), False),
    (job_mark, _obj("j", 1, status={"active": 1}), _obj("j", 2, status={"active": 0}), True),
    (job_mark, _obj("j", 1, status={}), _obj("j", 2, status={"conditions": [{"type": "Complete"}]}), True),
    (pod_mark, _obj("p", 1, status={"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
     _obj("p", 2, status={"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}), False),
    (pod_mark, _obj("p", 1, status={"phase": "Pending"}), _obj("p", 2, status={"phase": "Running"}), True),
    (pod_mark, _obj("p", 1, spec={}), _obj("p", 2, spec={"nodeName": "n1"}), True),
])
def test_marks_change_only_with_what_the_decision_reads(mark: Any, before: dict[str, Any],
                                                          after: dict[str, Any], queues: bool) -> None:
    assert (mark(before) != mark(after)) is queues


def test_the_cache_keeps_what_the_reconciler_reads() -> None:
    cache = Cache()
    managed = [{"manager": "kube-controller-manager"}]
    job = _obj("tj-a1", 1, labels={"trainforge.dev/job-name": "tj"},
               spec={"suspend": True, "template": {"spec": {"containers": []}}})
    job["metadata"]["managedFields"] = managed
    pod = _obj("tj-a1-0", 2, labels={"job-name": "tj-a1"}, spec={"nodeName": "n1", "containers": [{}]})
    cache.jobs.upsert(job)
    cache.pods.upsert(pod)
    assert cache.jobs.by_label("ns", "tj")[0]["spec"] == {"suspend": True}
    assert "managedFields" not in cache.jobs.by_label("ns", "tj")[0]["metadata"]
    assert cache.pods.by_label("ns", "tj-a1")[0]["spec"] == {"nodeName": "n1"}
