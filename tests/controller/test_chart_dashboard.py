"""The chart's optional dashboard: read-only by flag and by RBAC, and the
apiserver accepts what it renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.controller.test_chart import CHART, by_kind, helm, objects, render


def test_dashboard_is_read_only_by_flag_and_rbac(helm_binary: Path) -> None:
    assert "0 chart(s) failed" in helm(helm_binary, "lint", "--strict", str(CHART),
                                       "--set=dashboard.enabled=true").stdout
    assert not [d for d in objects(render(helm_binary)) if "dashboard" in d["metadata"]["name"]]  # off by default
    docs = objects(render(helm_binary, "dashboard.enabled=true", "dashboard.namespace=team-a"))
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "trainforge-dashboard"]
    assert role["metadata"]["namespace"] == "team-a"
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} <= {"get", "list", "watch"}
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "trainforge-dashboard"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trainforge-dashboard",
                                    "namespace": "trainforge-system"}]
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "trainforge-dashboard"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:5] == ["trainforge", "--backend", "kubernetes", "ui", "--read-only"]
    assert command[command.index("--namespace") + 1] == "team-a"
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "trainforge-dashboard"]
    assert service["spec"]["type"] == "ClusterIP"


def test_dashboard_passes_server_side_dry_run(kube: Any, trainforge_crd: Any, helm_binary: Path,
                                              kube_namespace: str) -> None:
    rendered = render(helm_binary, "dashboard.enabled=true", namespace=kube_namespace)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects(rendered)), result.stdout


# What `trainforge --backend kubernetes ui --read-only` calls (backends/kubernetes.py):
# list/get/watch trainingjobs, list pods of a job and read their logs. Nothing else.
DASHBOARD_USES = [("get", "trainingjobs.trainforge.dev"), ("list", "trainingjobs.trainforge.dev"),
                  ("watch", "trainingjobs.trainforge.dev"), ("list", "pods"), ("get", "pods"),
                  ("get", "pods:log")]
DASHBOARD_MUST_NOT = [("patch", "trainingjobs.trainforge.dev"), ("create", "trainingjobs.trainforge.dev"),
                      ("delete", "trainingjobs.trainforge.dev"), ("update", "trainingjobs.trainforge.dev"),
                      ("patch", "trainingjobs.trainforge.dev:status"), ("delete", "pods"),
                      ("create", "pods:exec"), ("get", "secrets"), ("list", "secrets"),
                      ("list", "tuningjobs.trainforge.dev"), ("create", "jobs.batch"), ("list", "configmaps")]


def test_dashboard_service_account_can_read_and_nothing_more(kube: Any, trainforge_crd: Any, helm_binary: Path,
                                                             kube_namespace: str) -> None:
    from tests.controller.test_manifests import can_i

    docs = objects(render(helm_binary, "dashboard.enabled=true", f"dashboard.namespace={kube_namespace}",
                          namespace=kube_namespace))
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            and d["metadata"]["name"] == "trainforge-dashboard"]
    assert len(rbac) == 3
    kube.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in rbac))
    user = f"system:serviceaccount:{kube_namespace}:trainforge-dashboard"
    for verb, resource in DASHBOARD_USES:
        assert can_i(kube, user, verb, resource, kube_namespace), (verb, resource)
    for verb, resource in DASHBOARD_MUST_NOT:
        assert not can_i(kube, user, verb, resource, kube_namespace), (verb, resource)
    for verb, resource in DASHBOARD_USES[:2]:  # another namespace's jobs: none
        assert not can_i(kube, user, verb, resource, "kube-system"), (verb, resource)
    assert not can_i(kube, user, "list", "trainingjobs.trainforge.dev", "")  # nor the cluster's
