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
    for sample in ("mnist.json", "mnist-tuning.json"):
        kube.kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(K8S / "samples" / sample))


@pytest.fixture(scope="module")
def applied_rbac(kube: Any, trainforge_crd: Any) -> str:  # can-i resolves the kinds by discovery
    kube.kubectl("apply", "-f", str(K8S / "controller" / "namespace.yaml"))
    kube.kubectl("apply", "-f", str(K8S / "controller" / "rbac.yaml"))
    return "system:serviceaccount:trainforge-system:trainforge-controller"


# Every call the controller makes, and the verb it needs (grep controller/ when adding one):
#   main.py informers     list+watch trainingjobs, tuningjobs, jobs.batch, pods (cluster-wide or --namespace)
#   reconciler.py         create jobs.batch, services; merge-patch jobs.batch (suspend),
#                         trainingjobs/status
#   tuning.py             create trainingjobs (trials); merge-patch trainingjobs (stop annotations),
#                         tuningjobs/status
#   retraining/           list+get retrainingpolicies, patch their status; list, get, create and
#                         patch (stop) the trainingjobs a policy made
#   events.py             create events
#   archive.py            get pods/log (one read of a finished trainer's log)
#   catalog.py            get configmaps/<catalog> in its own namespace
#   leader.py             get+update leases/trainforge-controller, create leases, in its own namespace
#   credentials.py        get secrets/trainforge-object-store (the parent of per-job credentials),
#                         create + JSON-patch the per-job secrets <job>-tf-storage
#   with TRAINFORGE_KUEUE only (chart kueue.enabled; not in k8s/): list+watch and merge-patch
#                         (spec.active) workloads.kueue.x-k8s.io (tests/controller/test_kueue.py)
USED = [
    ("list", "trainingjobs.trainforge.dev", "team-a"),
    ("watch", "trainingjobs.trainforge.dev", "team-a"),
    ("patch", "trainingjobs.trainforge.dev:status", "team-a"),
    ("create", "trainingjobs.trainforge.dev", "team-a"),
    ("patch", "trainingjobs.trainforge.dev", "team-a"),
    ("list", "tuningjobs.trainforge.dev", "team-a"),
    ("watch", "tuningjobs.trainforge.dev", "team-a"),
    ("patch", "tuningjobs.trainforge.dev:status", "team-a"),
    ("get", "trainingjobs.trainforge.dev", "team-a"),
    ("list", "retrainingpolicies.trainforge.dev", "team-a"),
    ("get", "retrainingpolicies.trainforge.dev", "team-a"),
    ("patch", "retrainingpolicies.trainforge.dev:status", "team-a"),
    ("create", "jobs.batch", "team-a"),
    ("patch", "jobs.batch", "team-a"),
    ("watch", "jobs.batch", "team-a"),
    ("list", "pods", "team-a"),
    ("watch", "pods", "team-a"),
    ("get", "pods:log", "team-a"),
    ("create", "services", "team-a"),
    ("create", "events", "team-a"),
    ("get", "configmaps/trainforge-instances", "trainforge-system"),
    ("get", "leases.coordination.k8s.io/trainforge-controller", "trainforge-system"),
    ("update", "leases.coordination.k8s.io/trainforge-controller", "trainforge-system"),
    ("create", "leases.coordination.k8s.io", "trainforge-system"),
    ("get", "secrets/trainforge-object-store", "team-a"),
    ("create", "secrets", "team-a"),
    ("patch", "secrets", "team-a"),
]
NOT_USED = [
    ("update", "trainingjobs.trainforge.dev", "team-a"),
    ("delete", "retrainingpolicies.trainforge.dev", "team-a"),
    ("update", "retrainingpolicies.trainforge.dev", "team-a"),
    ("delete", "trainingjobs.trainforge.dev", "team-a"),
    ("get", "tuningjobs.trainforge.dev", "team-a"),
    ("create", "tuningjobs.trainforge.dev", "team-a"),
    ("patch", "tuningjobs.trainforge.dev", "team-a"),
    ("update", "tuningjobs.trainforge.dev", "team-a"),
    ("delete", "tuningjobs.trainforge.dev", "team-a"),
    ("update", "tuningjobs.trainforge.dev:status", "team-a"),
    ("update", "trainingjobs.trainforge.dev:status", "team-a"),
    ("get", "jobs.batch", "team-a"),
    ("delete", "jobs.batch", "team-a"),
    ("update", "jobs.batch", "team-a"),
    ("get", "pods", "team-a"),
    ("create", "pods", "team-a"),
    ("delete", "pods", "team-a"),
    ("create", "pods:exec", "team-a"),
    ("get", "services", "team-a"),
    ("delete", "services", "team-a"),
    ("patch", "events", "team-a"),
    ("get", "secrets", "team-a"),
    ("list", "secrets", "trainforge-system"),
    ("list", "secrets", "team-a"),
    ("delete", "secrets", "team-a"),
    ("create", "serviceaccounts:token", "team-a"),
    ("get", "configmaps", "trainforge-system"),
    ("get", "configmaps/other", "trainforge-system"),
    ("update", "leases.coordination.k8s.io/someone-elses", "trainforge-system"),
    ("update", "leases.coordination.k8s.io/trainforge-controller", "team-a"),
    ("list", "nodes", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", "team-a"),
    ("escalate", "roles.rbac.authorization.k8s.io", "team-a"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", "team-a"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
]


@pytest.mark.parametrize(("verb", "resource", "namespace", "allowed"),
                         [(*c, True) for c in USED] + [(*c, False) for c in NOT_USED])
def test_service_account_is_least_privilege(
    kube: Any, applied_rbac: str, verb: str, resource: str, namespace: str, allowed: bool,
) -> None:
    assert can_i(kube, applied_rbac, verb, resource, namespace) is allowed


def can_i(kube: Any, user: str, verb: str, resource: str, namespace: str) -> bool:
    """``kubectl auth can-i`` as ``user``; ``resource`` is ``plural[.group][/name][:subresource]``,
    ``namespace`` "" for cluster scope."""
    resource, _, subresource = resource.partition(":")
    args = ["-n", namespace] if namespace else []
    if subresource:
        args.append(f"--subresource={subresource}")
    result = kube.kubectl("auth", "can-i", verb, resource, *args, "--as", user, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"
