"""k8s/ manifests: accepted by the apiserver (server-side dry run) and the
controller's service account can do what it needs and no more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

K8S = Path(__file__).resolve().parents[2] / "k8s"


def test_kustomization_and_sample_pass_server_side_dry_run(kube: Any, trainforge_crd: Any) -> None:
    # A dry run cannot create a namespace for the objects that follow it.
    kube.kubectl("apply", "-f", str(K8S / "controller" / "namespace.yaml"))
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", str(K8S))
    kube.kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(K8S / "samples" / "mnist.json"))


@pytest.fixture(scope="module")
def applied_rbac(kube: Any) -> str:
    kube.kubectl("apply", "-f", str(K8S / "controller" / "namespace.yaml"))
    kube.kubectl("apply", "-f", str(K8S / "controller" / "rbac.yaml"))
    return "system:serviceaccount:trainforge-system:trainforge-controller"


@pytest.mark.parametrize(("verb", "resource", "namespace", "allowed"), [
    ("create", "jobs.batch", "team-a", True),
    ("patch", "trainingjobs.trainforge.dev/status", "team-a", True),
    ("watch", "pods", "team-a", True),
    ("create", "services", "team-a", True),
    ("update", "leases.coordination.k8s.io", "trainforge-system", True),
    ("delete", "jobs.batch", "team-a", False),
    ("create", "pods", "team-a", False),
    ("get", "secrets", "team-a", False),
    ("get", "secrets/trainforge-object-store", "team-a", True),  # the parent of per-job credentials
    ("create", "secrets", "team-a", True),  # the per-job credentials
    ("list", "secrets", "team-a", False),
    ("delete", "secrets", "team-a", False),
    ("create", "trainingjobs.trainforge.dev", "team-a", False),
    ("update", "leases.coordination.k8s.io", "team-a", False),
])
def test_service_account_is_least_privilege(
    kube: Any, applied_rbac: str, verb: str, resource: str, namespace: str, allowed: bool,
) -> None:
    result = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", applied_rbac,
                          check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr
