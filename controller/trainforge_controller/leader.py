"""Leader election on a coordination.k8s.io Lease: one controller acts at a time."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

from kubernetes import client


class LeaderElector:
    """A coordination.k8s.io Lease: acquire when free or expired, renew while held."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str = "trainforge-controller",
                 identity: str | None = None, lease_seconds: int = 15):
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = lease_seconds

    def try_acquire(self) -> bool:
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.name}, "spec": {
                "holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": stamp, "renewTime": stamp}}
            try:
                self.coord.create_namespaced_lease(self.namespace, body)
                return True
            except client.ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
        spec = lease.spec
        renewed = spec.renew_time
        expired = renewed is None or (now - renewed).total_seconds() > (spec.lease_duration_seconds or 15)
        if spec.holder_identity != self.identity and not expired:
            return False
        spec.holder_identity, spec.renew_time = self.identity, now
        spec.lease_duration_seconds = self.lease_seconds
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
            return True
        except client.ApiException as exc:
            if exc.status == 409:  # someone else renewed first
                return False
            raise
