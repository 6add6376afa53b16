"""The kube_node fixture is a real kubelet node: pods run, with init containers,
native sidecars, logs and termination messages, beside the kwok nodes."""

from __future__ import annotations

from kubernetes import client

from tests.infra.kube_node import NODE_LABEL, NODE_TAINT
from tests.infra.waiting import wait_until


def test_a_pod_really_runs_on_the_real_node(kube, kube_node, kube_api, kube_namespace, container_engine):
    kube_node.load_image(container_engine, container_engine.base_image)
    core = client.CoreV1Api(kube_api)
    python = {"image": container_engine.base_image, "imagePullPolicy": "IfNotPresent"}
    core.create_namespaced_pod(kube_namespace, {
        "metadata": {"name": "real"},
        "spec": {
            "restartPolicy": "Never", "nodeSelector": dict([NODE_LABEL]), "tolerations": [NODE_TAINT],
            "automountServiceAccountToken": False,
            "initContainers": [
                {**python, "name": "init", "command": ["sh", "-c", "echo from-init > /work/data"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {**python, "name": "sidecar", "restartPolicy": "Always",
                 "command": ["sh", "-c", "trap 'echo sidecar got TERM; exit 0' TERM; while :; do sleep 0.2; done"]},
            ],
            "containers": [{**python, "name": "main", "terminationMessagePath": "/work/failure",
                            "command": ["sh", "-c", "cat /work/data; python3 -c 'import os; print(os.getuid())';"
                                        " echo the-message > /work/failure; exit 3"],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            "volumes": [{"name": "work", "emptyDir": {}}],
        }})

    def finished():
        pod = core.read_namespaced_pod("real", kube_namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_until(finished, timeout=120, what="the pod to finish", watch=kube_node.processes)
    assert pod.spec.node_name == kube_node.name and pod.status.phase == "Failed"
    [main] = pod.status.container_statuses
    assert main.state.terminated.exit_code == 3 and main.state.terminated.message == "the-message\n"
    # logs through the apiserver -> the real kubelet
    assert core.read_namespaced_pod_log("real", kube_namespace, container="main") == "from-init\n0\n"
    assert "sidecar got TERM" in core.read_namespaced_pod_log("real", kube_namespace, container="sidecar")
    # the kwok nodes are still there and Ready beside it
    assert len(kube.gpu_nodes) == 4
