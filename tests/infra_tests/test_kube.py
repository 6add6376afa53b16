"""The kube fixture is a real control plane whose fake nodes advertise GPUs."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.infra.fake_nodes import GPU_PRODUCT_LABEL, GPU_RESOURCE, H100
from tests.infra.waiting import wait_until

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def gpu_job(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "nodeSelector": {GPU_PRODUCT_LABEL: H100},
                "tolerations": [GPU_TOLERATION],
                "containers": [{
                    "name": "trainer",
                    "image": "example.invalid/trainer:1",  # kwok never pulls it
                    "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                }],
            }},
        },
    }


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> bool:
    job = batch.read_namespaced_job(name, namespace)
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def job_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items


def test_fake_gpu_nodes_advertise_gpus_and_are_tainted(kube, kube_api):
    nodes = client.CoreV1Api(kube_api).list_node(label_selector=f"{GPU_PRODUCT_LABEL}={H100}")
    assert sorted(n.metadata.name for n in nodes.items) == sorted(kube.gpu_nodes)
    assert len(nodes.items) == 4
    for node in nodes.items:
        assert node.status.allocatable[GPU_RESOURCE] == "8"
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
            (GPU_RESOURCE, "present", "NoSchedule")]


def test_job_asking_for_one_gpu_lands_on_a_gpu_node_and_completes(kube, kube_api, kube_namespace):
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(kube_namespace, gpu_job("one-gpu", 1))

    wait_until(lambda: job_condition(batch, kube_namespace, "one-gpu", "Complete"),
               timeout=60, what="Job one-gpu to become Complete", watch=kube.processes)

    [pod] = job_pods(core, kube_namespace, "one-gpu")
    assert pod.spec.node_name in kube.gpu_nodes
    assert pod.status.phase == "Succeeded"
    assert batch.read_namespaced_job("one-gpu", kube_namespace).status.succeeded == 1


def test_job_asking_for_more_gpus_than_exist_stays_pending(kube, kube_api, kube_namespace):
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(kube_namespace, gpu_job("too-big", 64))  # the cluster has 32

    def unschedulable() -> client.V1Pod | None:
        for pod in job_pods(core, kube_namespace, "too-big"):
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    return pod
        return None

    # The scheduler's verdict is the condition to wait for, not the passing of time.
    pod = wait_until(unschedulable, timeout=60, what="the scheduler to find no room",
                     watch=kube.processes)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name
    assert "nvidia.com/gpu" in pod.status.conditions[0].message
    assert not job_condition(batch, kube_namespace, "too-big", "Complete")


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, minimum: 1}}
"""


def test_crd_applied_with_kubectl_is_served(kube, kube_api, kube_namespace, tmp_path: Path):
    # CRDs are cluster-wide: a group per test keeps tests independent.
    group = f"{kube_namespace}.tests.trainforge.dev"
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(CRD.format(group=group))
    kube.kubectl("apply", "-f", str(crd_file))
    try:
        kube.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}",
                     "--timeout=60s")
        kube.kubectl("apply", "-n", kube_namespace, "-f", "-", input=(
            f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{size: 3}}\n"))

        custom = client.CustomObjectsApi(kube_api)
        widget = custom.get_namespaced_custom_object(group, "v1", kube_namespace, "widgets", "w1")
        assert widget["spec"] == {"size": 3}
        # The schema is enforced by the apiserver.
        rejected = kube.kubectl("apply", "-n", kube_namespace, "-f", "-", check=False, input=(
            f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w2}}\nspec: {{size: 0}}\n"))
        assert rejected.returncode != 0
        assert "spec.size" in rejected.stderr
    finally:
        kube.kubectl("delete", "-f", str(crd_file), "--wait=false", check=False)


def test_helm_installs_a_chart_into_the_namespace(kube, kube_api, kube_namespace, helm_binary,
                                                  tmp_path: Path):
    import subprocess

    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo}\n"
        "data: {greeting: {{ .Values.greeting | quote }}}\n")

    subprocess.run(
        [str(helm_binary), "install", "demo", str(chart), "-n", kube_namespace,
         "--set", "greeting=hi", "--wait", "--timeout", "60s"],
        env=kube.env(), capture_output=True, text=True, timeout=120, check=True,
    )

    cm = client.CoreV1Api(kube_api).read_namespaced_config_map("demo", kube_namespace)
    assert cm.data == {"greeting": "hi"}
