"""A real Kubernetes control plane with kwok-run fake nodes, on loopback.

etcd -> kube-apiserver (own CA, RBAC, service account keys) -> controller-manager
and scheduler (leader election off) -> kwok, which plays kubelet for nodes
annotated ``kwok.x-k8s.io/node=fake`` using the stages in ``kwok-stages.yaml``:
pods go Running, pods owned by a Job Succeed. Nothing runs in the pods.

kwok also serves the kubelet's API for its nodes (TLS on loopback, the node's
InternalIP and kubelet port set to it), so ``pods/log`` goes the real way:
client -> apiserver -> kubelet endpoint. Trainer containers of pods in
``LOGS_NAMESPACE`` log what ``KubeCluster.write_trainer_log`` last wrote (a
CRI log file kwok reads at each request); every other pod has no log.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import binaries, fake_nodes
from .pki import Pki, make_pki
from .ports import free_ports
from .processes import ServerProcess
from .waiting import wait_until

KWOK_STAGES = binaries.INFRA_DIR / "kwok-stages.yaml"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"  # kwok hands out pod IPs from here (its default is a /24)
LOGS_NAMESPACE = "trainforge-logs"  # where trainer containers have a log (kwok's ClusterLogs)


@dataclass
class KubeCluster:
    """A running cluster. ``api_client()`` and ``kubectl()`` act as cluster-admin."""

    server: str  # https://127.0.0.1:<port>
    kubeconfig: Path
    pki: Pki
    kubectl_path: Path
    run_dir: Path
    processes: list[ServerProcess]
    gpu_nodes: list[str] = field(default_factory=list)
    cpu_nodes: list[str] = field(default_factory=list)

    @property
    def log_files(self) -> list[Path]:
        return [p.log_path for p in self.processes]

    def env(self) -> dict[str, str]:
        """The environment with ``KUBECONFIG`` pointing at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` for this cluster."""
        from kubernetes import config

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_path), *args], input=input, capture_output=True, text=True,
            env=self.env(), timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    @property
    def trainer_log_file(self) -> Path:
        return self.run_dir / "kubelet" / "trainer.log"

    def write_trainer_log(self, lines: list[str], at: str = "2026-01-01T00:00:00.000000000Z") -> None:
        """What trainer containers in ``LOGS_NAMESPACE`` have logged: kubelet
        (CRI) log lines, written whole then renamed so a read never sees half."""
        text = "".join(f"{at} stdout F {line}\n" for line in lines)
        partial = self.trainer_log_file.with_suffix(".partial")
        partial.write_text(text)
        partial.replace(self.trainer_log_file)

    def failure(self) -> str | None:
        """Why the cluster is broken (a server exited), else None."""
        return next((f for p in self.processes if (f := p.failure())), None)

    def stop(self) -> None:
        # Reverse start order: clients first, etcd last.
        for process in reversed(self.processes):
            process.stop()


def kubeconfig_dict(server: str, pki: Pki, user: str = "admin") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "trainforge-test", "cluster": {
            "server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": user, "user": {
            "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": "trainforge-test", "context": {
            "cluster": "trainforge-test", "user": user}}],
        "current-context": "trainforge-test",
    }


def apiserver_args(
    etcd_url: str, port: int, pki: Pki, etcd_prefix: str = "/registry",
) -> list[str]:
    return [
        f"--etcd-servers={etcd_url}",
        f"--etcd-prefix={etcd_prefix}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # No kubelets or peers: the default reconciler would try to publish
        # 127.0.0.1 as the endpoint of service/kubernetes and log errors forever.
        "--endpoint-reconciler-type=none",
        # kwok's nodes have an InternalIP (loopback) and no resolvable host name.
        "--kubelet-preferred-address-types=InternalIP",
        # How it authenticates to a real kubelet (kube_node.py) for logs and exec.
        f"--kubelet-client-certificate={pki.admin_cert}",
        f"--kubelet-client-key={pki.admin_key}",
        # Two cores are shared with the tests; flow control only adds work here.
        "--enable-priority-and-fairness=false",
        "--profiling=false",
    ]


def _component_args(kubeconfig: Path, port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--profiling=false",
    ]


def start_kube_cluster(
    run_dir: Path,
    log_dir: Path,
    gpu_nodes: int = 4,
    gpus_per_node: int = 8,
    gpu_product: str = fake_nodes.H100,
    cpu_nodes: int = 2,
    stages: Path = KWOK_STAGES,
    timeout: float = 120,
) -> KubeCluster:
    """Start everything, create the fake nodes, and return once they are Ready.

    Raises binaries.ComponentUnavailable before starting anything if a binary
    is missing, so a half-built cache never leaves processes behind.
    """
    paths = {n: binaries.locate(n) for n in (
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")}
    run_dir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(run_dir / "pki")
    etcd_port, peer_port, api_port, cm_port, sched_port, kwok_port = free_ports(6)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = run_dir / "admin.kubeconfig"
    kubeconfig.write_text(json.dumps(kubeconfig_dict(server, pki), indent=2))
    cluster = KubeCluster(server, kubeconfig, pki, paths["kubectl"], run_dir, [])

    def start(name: str, args: list[str]) -> ServerProcess:
        process = ServerProcess(name, [paths[name], *args], log_dir / f"{name}.log").start()
        cluster.processes.append(process)
        return process

    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = start("etcd", [
            "--name=default", f"--data-dir={run_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            # Throwaway data: durability costs seconds per test on a slow disk.
            "--unsafe-no-fsync",
        ])
        wait_until(lambda: _get(f"{etcd_url}/health") == 200,
                   timeout=timeout, what="etcd to be healthy", watch=[etcd])

        apiserver = start("kube-apiserver", apiserver_args(etcd_url, api_port, pki))
        tls = ssl.create_default_context(cafile=str(pki.ca_cert))
        tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        wait_until(lambda: _get(f"{server}/readyz", tls) == 200,
                   timeout=timeout, what="kube-apiserver to be ready", watch=[etcd, apiserver])

        cm = start("kube-controller-manager", [
            *_component_args(kubeconfig, cm_port),
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # A fake node's lease is renewed by kwok; be lenient on a busy CI machine.
            "--node-monitor-grace-period=120s",
        ])
        scheduler = start("kube-scheduler", _component_args(kubeconfig, sched_port))
        insecure = ssl._create_unverified_context()  # self-signed serving certs; health only
        for process, port in ((cm, cm_port), (scheduler, sched_port)):
            url = f"https://127.0.0.1:{port}/healthz"
            wait_until(lambda url=url: _get(url, insecure) == 200,  # type: ignore[misc]
                       timeout=timeout, what=f"{process.name} to be healthy",
                       watch=cluster.processes)

        cluster.trainer_log_file.parent.mkdir(parents=True, exist_ok=True)
        cluster.write_trainer_log([])
        logs_config = run_dir / "kwok-logs.yaml"
        logs_config.write_text(json.dumps({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
            "metadata": {"name": "trainer-logs"},
            "spec": {"selector": {"matchNamespaces": [LOGS_NAMESPACE]},
                     "logs": [{"containers": ["trainer"], "logsFile": str(cluster.trainer_log_file)}]},
        }))
        start("kwok", [
            f"--kubeconfig={kubeconfig}", f"--config={stages}", f"--config={logs_config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={fake_nodes.KWOK_ANNOTATION}=fake",
            # The kubelet API of every fake node: the apiserver proxies pods/log here.
            f"--server-address=127.0.0.1:{kwok_port}",
            "--node-ip=127.0.0.1", f"--node-port={kwok_port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ])
        from kubernetes import client

        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            cluster.gpu_nodes = fake_nodes.create_nodes(core, (
                fake_nodes.gpu_node(f"kwok-gpu-{i}", gpus_per_node, gpu_product)
                for i in range(gpu_nodes)))
            cluster.cpu_nodes = fake_nodes.create_nodes(core, (
                fake_nodes.cpu_node(f"kwok-cpu-{i}") for i in range(cpu_nodes)))
            wait_until(
                lambda: _nodes_ready(core, cluster.gpu_nodes + cluster.cpu_nodes),
                timeout=timeout, what="the fake nodes to be Ready", watch=cluster.processes)
            wait_until(lambda: core.read_namespaced_service_account("default", "default"),
                       timeout=timeout, what="the default service account",
                       watch=cluster.processes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _nodes_ready(core: Any, names: list[str]) -> bool:
    ready = {n.metadata.name for n in core.list_node().items if fake_nodes.node_is_ready(n)}
    return set(names) <= ready


def _get(url: str, context: ssl.SSLContext | None = None) -> int:
    with urllib.request.urlopen(url, timeout=3, context=context) as response:
        return int(response.status)
