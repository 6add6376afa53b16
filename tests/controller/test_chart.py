"""charts/trainforge: lints, renders, the apiserver accepts what it renders
(server-side dry run, with and without MinIO), the catalog it renders is one the
controller reads, and its CRD and RBAC are the same as k8s/'s."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from trainforge_controller.catalog import CATALOG_KEY, parse_catalog

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "trainforge"
K8S = ROOT / "k8s"


def helm(binary: Path, *args: str, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def render(binary: Path, *sets: str, namespace: str = "trainforge-system") -> str:
    args = [f"--set={s}" for s in sets]
    return helm(binary, "template", "trainforge", str(CHART), "--namespace", namespace, *args).stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_crds_are_the_generated_ones() -> None:
    generated = sorted(p.name for p in (K8S / "crds").glob("*.yaml"))
    assert generated == ["trainforge.dev_trainingjobs.yaml", "trainforge.dev_tuningjobs.yaml"]
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == generated
    for name in generated:
        assert (CHART / "crds" / name).read_text() == (K8S / "crds" / name).read_text(), (
            "charts/trainforge/crds/ is stale: after regenerating k8s/crds/, run "
            "cp k8s/crds/*.yaml charts/trainforge/crds/")


@pytest.mark.parametrize("sets", [(), ("minio.enabled=true", "metrics.serviceMonitor.enabled=true")],
                         ids=["defaults", "minio-servicemonitor"])
def test_helm_lint_passes(helm_binary: Path, sets: tuple[str, ...]) -> None:
    result = helm(helm_binary, "lint", "--strict", str(CHART), *[f"--set={s}" for s in sets])
    assert "0 chart(s) failed" in result.stdout


def test_defaults_render_controller_rbac_catalog_and_no_minio(helm_binary: Path) -> None:
    docs = objects(render(helm_binary))
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("ServiceAccount", "trainforge-controller"), ("ClusterRole", "trainforge-controller"),
        ("ClusterRoleBinding", "trainforge-controller"), ("Role", "trainforge-controller"),
        ("RoleBinding", "trainforge-controller"), ("ConfigMap", "trainforge-instances"),
        ("Deployment", "trainforge-controller"), ("Service", "trainforge-controller-metrics"),
    ])
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "trainforge/controller:0.1.0"
    assert "--no-leader-election" not in container["command"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRAINFORGE_STAGER_IMAGE"] == "trainforge/stager:0.1.0"
    assert env["TRAINFORGE_CATALOG_CONFIGMAP"] == "trainforge-instances"
    assert env["TRAINFORGE_CATALOG_NAMESPACE"] == "trainforge-system"
    assert env["TRAINFORGE_OBJECT_STORE_SECRET"] == "trainforge-object-store"
    assert container["envFrom"] == [{"secretRef": {"name": "trainforge-object-store", "optional": True}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_values_reach_the_deployment_and_metrics_objects(helm_binary: Path) -> None:
    docs = objects(render(
        helm_binary, "controller.replicas=1", "controller.leaderElection.enabled=false",
        "controller.image.tag=9.9.9", "jobs.stagerImage.repository=registry.example.com/stager",
        "controller.resources.limits.memory=3Gi", "metrics.enabled=false", "controller.logLevel=debug",
        "controller.workers=4"))
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert "--no-leader-election" in container["command"]
    command = " ".join(container["command"])
    assert "--log-level DEBUG" in command and "--workers 4" in command
    assert container["command"][container["command"].index("--metrics-port") + 1] == "0"
    assert container["image"] == "trainforge/controller:9.9.9"
    assert {"name": "TRAINFORGE_STAGER_IMAGE", "value": "registry.example.com/stager:0.1.0"} in container["env"]
    assert container["resources"]["limits"]["memory"] == "3Gi"
    assert "ports" not in container
    assert not by_kind(docs, "Service")

    monitored = objects(render(helm_binary, "metrics.serviceMonitor.enabled=true",
                               "metrics.serviceMonitor.labels.release=prom"))
    (monitor,) = by_kind(monitored, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_several_replicas_without_leader_election_are_refused(helm_binary: Path) -> None:
    result = helm(helm_binary, "template", "trainforge", str(CHART),
                  "--set=controller.leaderElection.enabled=false", check=False)
    assert result.returncode != 0
    assert "leaderElection" in result.stderr


def test_rendered_catalog_is_what_the_controller_reads(helm_binary: Path) -> None:
    docs = objects(render(helm_binary, "instances.a100-4x.cpus=48", "instances.a100-4x.memory_gib=400",
                          "instances.a100-4x.gpus=4", "instances.a100-4x.hourly_price=12.5",
                          "instances.a100-4x.node_selector.gpu=a100"))
    (configmap,) = by_kind(docs, "ConfigMap")
    catalog = parse_catalog(configmap["data"][CATALOG_KEY])
    values = yaml.safe_load((CHART / "values.yaml").read_text())["instances"]
    assert set(catalog) == set(values) | {"a100-4x"}
    gpu = catalog["gpu-1x"]
    assert (gpu.cpus, gpu.memory_gib, gpu.gpus, gpu.hourly_price) == (12, 100, 1, 2.5)
    assert gpu.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert gpu.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    added = catalog["a100-4x"]
    assert (added.gpus, added.hourly_price, added.node_selector) == (4, 12.5, {"gpu": "a100"})


def _rules(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {d["kind"]: d.get("rules") or d.get("roleRef") for d in docs
            if d["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")}


def test_rbac_is_the_same_as_k8s(helm_binary: Path) -> None:
    chart = objects(render(helm_binary))
    k8s = objects((K8S / "controller" / "rbac.yaml").read_text())
    assert _rules(chart) == _rules(k8s)
    for docs in (chart, k8s):
        for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trainforge-controller",
                                            "namespace": "trainforge-system"}]


def test_watch_namespace_makes_the_job_rules_a_role_there(helm_binary: Path) -> None:
    docs = objects(render(helm_binary, "controller.watchNamespace=team-a"))
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in by_kind(docs, "Role")}
    assert set(roles) == {("team-a", "trainforge-controller-jobs"), ("trainforge-system", "trainforge-controller")}
    (cluster_role,) = by_kind(objects((K8S / "controller" / "rbac.yaml").read_text()), "ClusterRole")
    assert roles["team-a", "trainforge-controller-jobs"]["rules"] == cluster_role["rules"]
    bindings = {d["metadata"]["namespace"]: d for d in by_kind(docs, "RoleBinding")}
    assert bindings["team-a"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                             "name": "trainforge-controller-jobs"}
    assert bindings["team-a"]["subjects"] == [{"kind": "ServiceAccount", "name": "trainforge-controller",
                                               "namespace": "trainforge-system"}]
    (deployment,) = by_kind(docs, "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "WATCH_NAMESPACE", "value": "team-a"} in env


@pytest.mark.parametrize("sets", [(), ("minio.enabled=true",)], ids=["defaults", "minio"])
def test_rendered_manifests_pass_server_side_dry_run(
    kube: Any, trainforge_crd: Any, helm_binary: Path, kube_namespace: str, sets: tuple[str, ...],
) -> None:
    rendered = render(helm_binary, *sets, namespace=kube_namespace)
    docs = objects(rendered)
    assert bool(by_kind(docs, "PersistentVolumeClaim")) == bool(sets)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), result.stdout


def test_minio_renders_secrets_volume_and_endpoint(helm_binary: Path) -> None:
    docs = objects(render(helm_binary, "minio.enabled=true", "minio.rootPassword=s3cret-s3cret",
                          "minio.persistence.size=5Gi"))
    secrets = {d["metadata"]["name"]: d["stringData"] for d in by_kind(docs, "Secret")}
    assert secrets["trainforge-minio"] == {"MINIO_ROOT_USER": "trainforge", "MINIO_ROOT_PASSWORD": "s3cret-s3cret"}
    assert secrets["trainforge-object-store"]["AWS_ENDPOINT_URL"] == "http://trainforge-minio.trainforge-system.svc:9000"
    assert secrets["trainforge-object-store"]["AWS_SECRET_ACCESS_KEY"] == "s3cret-s3cret"
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    minio = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "trainforge-minio")
    assert minio["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "trainforge-minio"

    external = objects(render(helm_binary, "minio.enabled=true", "minio.existingSecret=mine"))
    assert not by_kind(external, "Secret")
    minio = next(d for d in by_kind(external, "Deployment") if d["metadata"]["name"] == "trainforge-minio")
    assert minio["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "mine"}}]
