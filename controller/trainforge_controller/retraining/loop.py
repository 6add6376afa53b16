"""Drives RetrainingReconciler until the controller's manager watches
RetrainingPolicies itself: every ``poll_seconds`` one LIST of the policies;
a policy is reconciled when its requeue time has come, and on every poll while
a run of it is active (its child's phase is followed). Started by the
controller beside its watches, after the leader lease is held; a cluster
without the RetrainingPolicy CRD (or a controller role without it) costs one
LIST a minute."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import GROUP, VERSION
from .crd import PLURAL
from .reconciler import RetrainingReconciler

log = logging.getLogger("trainforge.controller.retraining")
IDLE_REQUEUE_SECONDS = 3600.0
ERROR_REQUEUE_SECONDS = 30.0
NO_CRD_POLL_SECONDS = 60.0


class RetrainingLoop:
    def __init__(self, api: client.ApiClient, namespace: str | None = None, poll_seconds: float = 10.0,
                 reconciler: RetrainingReconciler | None = None):
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.reconciler = reconciler or RetrainingReconciler(api)
        self.due: dict[tuple[str, str], float] = {}

    def _list(self) -> list[dict[str, Any]]:
        if self.namespace:
            listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        else:
            listed = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return list(listed.get("items") or [])

    def poll(self) -> None:
        """One pass over every policy that is due (or has an active run)."""
        now = time.monotonic()
        seen = set()
        for item in self._list():
            key = (item["metadata"]["namespace"], item["metadata"]["name"])
            seen.add(key)
            if not (item.get("status") or {}).get("active") and now < self.due.get(key, 0.0):
                continue
            try:
                after = self.reconciler.reconcile(*key)
            except Exception as exc:  # noqa: BLE001 - one policy's failure must not stop the others
                log.warning("retraining policy %s/%s: %s", key[0], key[1], exc)
                after = ERROR_REQUEUE_SECONDS
            self.due[key] = now + (after if after is not None else IDLE_REQUEUE_SECONDS)
        for key in set(self.due) - seen:
            del self.due[key]

    def run(self, stop: threading.Event) -> None:
        warned = False
        while not stop.is_set():
            try:
                self.poll()
            except ApiException as exc:
                if exc.status in (403, 404):  # no CRD, or the controller's role does not include it yet
                    if not warned:
                        log.info("retraining policies are off: the RetrainingPolicy CRD is not installed or "
                                 "not granted to the controller (HTTP %s)", exc.status)
                        warned = True
                    stop.wait(NO_CRD_POLL_SECONDS)
                    continue
                log.warning("listing retraining policies failed: %s", exc.reason)
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                log.warning("retraining loop: %s", exc)
            stop.wait(self.poll_seconds)
