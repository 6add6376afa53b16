"""Kueue's manager as a host process against the test control plane.

The binary, its CRDs and its webhook manifests come from one build
(``build-servers.sh kueue``: the module source at ``KUEUE_VERSION``). Kueue is
configured for batch/v1 Jobs only, leader election off, every port on
loopback.

Webhooks: the cluster has no kube-proxy or DNS, so the upstream webhook
configurations (which name a Service) are registered by URL instead, at
``https://127.0.0.1:<port>`` with the cluster CA's serving certificate (its
SANs include 127.0.0.1). Only the webhooks of what is enabled (Kueue's own
kinds and batch/v1 Jobs) are registered: a webhook of a disabled integration
(pods, deployments ...) with ``failurePolicy: Fail`` would make every pod of
the session wait on Kueue. The trainforge controller does not rely on them:
it creates queued Jobs suspended itself (builder.py).

Its metrics certificate: with internal certificate management off, upstream
reads it from /etc/kueue/metrics/certs; the build lets ``KUEUE_METRICS_CERT_DIR``
name this run's folder instead, so nothing on the host is touched.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import binaries
from .kube_cluster import KubeCluster
from .ports import free_ports
from .processes import ServerProcess
from .waiting import wait_until

NAMESPACE = "kueue-system"  # Kueue's own namespace (its Events, its config's namespace)
WEBHOOK_PREFIX = "kueue-"  # as kustomize names them in a real install
# Webhooks whose path names one of these are registered; the rest belong to
# integrations this configuration leaves off.
_ENABLED_WEBHOOK_PATHS = ("-kueue-x-k8s-io-", "-batch-v1-job")


@dataclass
class KueueServer:
    process: ServerProcess
    cluster: KubeCluster
    webhook_url: str
    webhooks: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) registered

    @property
    def log_files(self) -> list[Path]:
        return [self.process.log_path]

    def failure(self) -> str | None:
        return self.process.failure() or self.cluster.failure()

    def stop(self) -> None:
        # The webhooks go first: with Kueue gone they would refuse every Job.
        for kind, name in reversed(self.webhooks):
            self.cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        self.process.stop()


def kueue_config(health_port: int, metrics_port: int, webhook_port: int, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        # The default (50/100) throttles a burst of admissions on its own client.
        "clientConnection": {"qps": 200, "burst": 400},
    }


def webhook_configurations(manifests: str, base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Upstream's webhook configurations, by URL, less disabled integrations."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc or doc.get("kind") not in ("MutatingWebhookConfiguration",
                                              "ValidatingWebhookConfiguration"):
            continue
        hooks = []
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            if any(part in path for part in _ENABLED_WEBHOOK_PATHS):
                hook["clientConfig"] = {"url": base_url + path,
                                        "caBundle": base64.b64encode(ca_bundle).decode()}
                hooks.append(hook)
        doc["metadata"]["name"] = WEBHOOK_PREFIX + doc["metadata"]["name"]
        doc["webhooks"] = hooks
        out.append(doc)
    return out


def start_kueue(cluster: KubeCluster, run_dir: Path, log_dir: Path, timeout: float = 120) -> KueueServer:
    binary = binaries.locate("kueue")
    crds, manifests = binary.parent / "crds", binary.parent / "webhooks.yaml"
    if not crds.is_dir() or not manifests.is_file():
        raise binaries.ComponentUnavailable(
            "kueue", f"{binary.parent} lacks crds/ or webhooks.yaml (run tests/infra/build-servers.sh kueue)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)  # exists on a second start

    cert_dir = run_dir / "certs"
    cert_dir.mkdir(exist_ok=True)
    shutil.copyfile(cluster.pki.serving_cert, cert_dir / "tls.crt")
    shutil.copyfile(cluster.pki.serving_key, cert_dir / "tls.key")
    health, metrics, webhook = free_ports(3)
    config = run_dir / "config.yaml"
    config.write_text(json.dumps(kueue_config(health, metrics, webhook, cert_dir), indent=2))
    process = ServerProcess("kueue", [
        # The visibility API (pending workloads through an APIService) wants
        # certificates in a fixed folder and an aggregated apiserver: not used.
        binary, f"--config={config}", "--feature-gates=VisibilityOnDemand=false",
    ], log_dir / "kueue.log", env={**cluster.env(), "KUEUE_METRICS_CERT_DIR": str(cert_dir)}).start()
    server = KueueServer(process, cluster, f"https://127.0.0.1:{webhook}")
    try:
        wait_until(lambda: _status(f"http://127.0.0.1:{health}/readyz") == 200, timeout=timeout,
                   what="kueue to be ready", watch=[process, *cluster.processes])
        for doc in webhook_configurations(manifests.read_text(), server.webhook_url,
                                          cluster.pki.ca_cert.read_bytes()):
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(doc))
            server.webhooks.append((doc["kind"].lower(), doc["metadata"]["name"]))
    except BaseException:
        server.stop()
        raise
    return server


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except OSError:
        return 0
