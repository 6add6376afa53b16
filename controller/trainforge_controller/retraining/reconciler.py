"""The thin apply for a RetrainingPolicy: observe (the policy, its child
TrainingJobs, the inputs' listing when a data check is due) -> ``decide`` ->
stop/create a child -> gate, register and promote a completed one -> write
status once. Returns when to look again (the next schedule time or data check).

Not yet wired into the controller's manager (another change reshapes it into
several reconcilers): ``RetrainingReconciler(api, ...).reconcile(ns, name)`` is
the whole hook, to be called for RetrainingPolicy events, TrainingJob events
of children (label ``trainforge.dev/retraining-policy``) and on requeue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainforge.errors import TrainforgeError
from trainforge.gate import GateRule, evaluate
from trainforge.registry import ModelRegistry
from trainforge.registry.documents import channel_manifest, manifest_digest
from trainforge.retraining import champion_of
from trainforge.spec import TrainingJob
from trainforge.spec.retraining import RetrainingPolicy
from trainforge.storage import ObjectStore, open_store

from .. import GROUP, PLURAL as JOB_PLURAL, VERSION
from .crd import PLURAL
from .decide import Child, Observed, data_check_due, decide, record

log = logging.getLogger("trainforge.controller.retraining")
POLICY_LABEL = "trainforge.dev/retraining-policy"
STOP_ANNOTATION = "trainforge.dev/stop"


class RetrainingReconciler:
    def __init__(self, api: client.ApiClient, *, registry_root: str | None = None,
                 store_opener: Callable[[str], ObjectStore] = open_store,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.custom = client.CustomObjectsApi(api)
        self.registry_root = registry_root
        self.store_opener = store_opener
        self.clock = clock

    def _children(self, namespace: str, name: str) -> dict[str, Child]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, JOB_PLURAL,
                                                           label_selector=f"{POLICY_LABEL}={name}")
        return {item["metadata"]["name"]: Child(item["metadata"]["name"],
                                                (item.get("status") or {}).get("phase", "Pending"))
                for item in listed.get("items", [])}

    def _data_digest(self, policy: RetrainingPolicy) -> str:
        """One LIST per watched prefix: keys, sizes and ETags, hashed."""
        trigger = policy.spec.data_trigger
        assert trigger is not None
        uris = trigger.uris or [i.uri for i in policy.spec.training_job_template.inputs]
        return manifest_digest({uri: channel_manifest(uri, self.store_opener(uri).list(uri)) for uri in uris})

    def _child(self, policy: RetrainingPolicy, owner: dict[str, Any], name: str) -> dict[str, Any]:
        spec = policy.spec.training_job_template.model_dump(by_alias=True, exclude_none=True, mode="json")
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"name": name, "namespace": policy.metadata.namespace,
                             "labels": {POLICY_LABEL: policy.metadata.name},
                             "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "RetrainingPolicy",
                                                  "name": policy.metadata.name, "uid": owner["metadata"]["uid"],
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "spec": spec}

    def _gate(self, policy: RetrainingPolicy, namespace: str, job_name: str) -> dict[str, Any]:
        """Gate the completed child; register and promote it when it passes."""
        document = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, JOB_PLURAL, job_name)
        job = TrainingJob.model_validate(_sdk_view(document))
        model = policy.spec.model
        registry = ModelRegistry(model.registry or self.registry_root, namespace=namespace)
        g = policy.spec.gate
        rule = GateRule(g.metric, g.min, g.max, g.max_regression, g.direction)
        vs = f"{model.name}@{model.promote_to}" if model.promote_to else None
        champion = champion_of(registry, vs) if vs else None
        try:
            result = evaluate(rule, job.status.final_metrics if job.status else {}, champion, f"job {job_name}")
        except TrainforgeError as exc:  # a metric never reported: a failed gate, said so
            return {"passed": False, "gate": str(exc), "version": None, "promoted": False}
        detail = "; ".join(c.detail for c in result.checks)
        if not result.passed:
            return {"passed": False, "gate": detail, "version": None, "promoted": False}
        version = registry.find_by_job(model.name, job_name, namespace) if _has_versions(registry, model.name) \
            else None
        if version is None:
            version = registry.register(job, model.name, backend="kubernetes", environ={})
        promoted = False
        if model.promote_to:
            state = registry.alias(model.name, model.promote_to)
            if state.version != version.version:
                expect = champion.version if champion is not None else None
                registry.promote(model.name, version.version, model.promote_to, expect=expect, environ={})
            promoted = True
        return {"passed": True, "gate": detail, "version": version.version, "promoted": promoted}

    def reconcile(self, namespace: str, name: str) -> float | None:
        try:
            document = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        policy = RetrainingPolicy.model_validate(_sdk_view(document))
        now = self.clock()
        digest = self._data_digest(policy) if data_check_due(policy, now) else None
        decision = decide(policy, Observed(now, self._children(namespace, name), digest))
        if decision.stop:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, JOB_PLURAL, decision.stop,
                                                       {"metadata": {"annotations": {STOP_ANNOTATION: "true"}}})
        if decision.create:
            try:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, JOB_PLURAL,
                                                            self._child(policy, document, decision.create))
            except ApiException as exc:
                if exc.status != 409:  # AlreadyExists: an earlier pass made it
                    raise
            log.info("%s/%s: started %s (%s)", namespace, name, decision.create, decision.trigger)
        status = decision.status
        if decision.to_gate:
            outcome = self._gate(policy, namespace, decision.to_gate)
            status = record(status, decision.to_gate, passed=outcome["passed"], gate=outcome["gate"],
                            version=outcome["version"], promoted=outcome["promoted"])
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name,
            {"status": status.model_dump(by_alias=True, mode="json")})
        return decision.requeue_after if not decision.to_gate else 1.0


def _sdk_view(raw: dict[str, Any]) -> dict[str, Any]:
    """The custom object as the SDK models read it (server-only metadata dropped)."""
    meta = raw["metadata"]
    return {"apiVersion": raw["apiVersion"], "kind": raw["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
            "spec": raw.get("spec") or {}, "status": raw.get("status")}


def _has_versions(registry: ModelRegistry, name: str) -> bool:
    from trainforge.errors import ModelNotFound

    try:
        registry.get(name)
        return True
    except ModelNotFound:
        return False
