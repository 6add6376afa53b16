"""Fake nodes that kwok keeps Ready: GPU nodes like a DGX H100, and CPU nodes.

The manifest builders are pure; ``create_nodes``/``wait_nodes_ready`` talk to
the apiserver through the official client. Benchmarks reuse these to grow a
cluster (e.g. ``add_gpu_nodes(core, 32, prefix="bench-gpu")``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kubernetes import client

from .waiting import wait_until

# kwok is started with --manage-nodes-with-annotation-selector=<this>=fake, so
# it only pretends to run the nodes made here.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
H100 = "NVIDIA-H100-80GB-HBM3"
NODE_KIND_LABEL = "trainforge.dev/test-node-kind"


def gpu_node(
    name: str, gpus: int = 8, product: str = H100, cpu: str = "224", memory: str = "2Ti",
) -> dict[str, Any]:
    """A node advertising ``gpus`` GPUs, labelled with the product and tainted
    ``nvidia.com/gpu=present:NoSchedule`` so only pods that tolerate it land there."""
    node = _node(name, {"cpu": cpu, "memory": memory, "pods": "110", GPU_RESOURCE: str(gpus)},
                 {GPU_PRODUCT_LABEL: product, "nvidia.com/gpu.count": str(gpus),
                  NODE_KIND_LABEL: "gpu"})
    node["spec"]["taints"] = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    return node


def cpu_node(name: str, cpu: str = "32", memory: str = "128Gi") -> dict[str, Any]:
    """An untainted node without GPUs, for CPU instance types and helpers."""
    return _node(name, {"cpu": cpu, "memory": memory, "pods": "110"}, {NODE_KIND_LABEL: "cpu"})


def _node(name: str, resources: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "type": "kwok", **labels,
            },
        },
        "spec": {},
        # kwok's node-initialize stage keeps capacity/allocatable as given.
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def create_nodes(core: client.CoreV1Api, nodes: Iterable[dict[str, Any]]) -> list[str]:
    """Create the nodes (an existing one of the same name is left as it is)."""
    names = []
    for node in nodes:
        try:
            core.create_node(node)  # type: ignore[arg-type]  # the client sends dicts as they are
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        names.append(node["metadata"]["name"])
    return names


def node_is_ready(node: client.V1Node) -> bool:
    """Ready, and the node controller has lifted its ``node.kubernetes.io/*`` taints.

    A new node is briefly tainted not-ready until the controller sees the
    Ready condition kwok posts; pods that do not tolerate that would wait.
    """
    conditions = (node.status and node.status.conditions) or []
    taints = (node.spec and node.spec.taints) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions) and not any(
        t.key.startswith("node.kubernetes.io/") for t in taints)


def wait_nodes_ready(core: client.CoreV1Api, names: Sequence[str], timeout: float = 60) -> None:
    wanted = set(names)

    def all_ready() -> bool:
        nodes = core.list_node(label_selector="type=kwok").items
        ready = {n.metadata.name for n in nodes if n.metadata and node_is_ready(n)}
        return wanted <= ready

    wait_until(all_ready, timeout=timeout, what=f"{len(wanted)} fake nodes to be Ready")


def add_gpu_nodes(
    core: client.CoreV1Api, count: int, prefix: str = "kwok-gpu", gpus: int = 8,
    product: str = H100, timeout: float = 120,
) -> list[str]:
    """Create ``count`` fake GPU nodes named ``<prefix>-<i>`` and wait until Ready."""
    names = create_nodes(core, (gpu_node(f"{prefix}-{i}", gpus, product) for i in range(count)))
    wait_nodes_ready(core, names, timeout)
    return names
