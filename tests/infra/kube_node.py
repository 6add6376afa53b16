"""One real worker node joined to the test control plane: containerd (Debian's,
with its own config, root, state and socket under the run folder) + runc + a
CNI bridge + the kubelet built at KUBERNETES_VERSION. Pods on it really run.

The kwok nodes stay; the real node is tainted (``NODE_TAINT``) and labelled
(``NODE_LABEL``), so only pods that tolerate and select it land on it. Images
come without a registry: ``load_image`` pipes ``podman save`` into
``ctr images import``; pods use them with ``imagePullPolicy: IfNotPresent``.
Every container on the node sees ``shared_mounts`` (read-only bind mounts from
containerd's base runtime spec): the tests use it to lend the host's PyTorch
to images, as the Podman tests do with a volume, instead of baking gigabytes in.

Host changes, all undone by ``stop`` (and listed in tests/infra/README.md):
the kubelet's sysctls (put back as soon as the node is Ready, again at stop),
net.ipv4.ip_forward (the bridge plugin), the bridge, the mounts under the run
folder, /var/log/containers links, /var/lib/cni/results entries,
/run/containerd/s, the kubepods cgroups, and every process (containerd's shims
are found by our socket path). What this machine cannot do (not root, no
containerd or CNI plugins, another kubelet's cgroups present) raises
ComponentUnavailable naming it before anything is changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import binaries
from .binaries import ComponentUnavailable
from .pki import Pki, _leaf
from .pod_dns import DOMAIN, PodDns
from .ports import free_ports
from .processes import ServerProcess
from .waiting import wait_until

NODE_NAME = "127.0.0.1"  # an IP-literal name: InternalIP 127.0.0.1, as the kwok nodes (see README)
NODE_LABEL = ("trainforge.dev/real-node", "true")
NODE_TAINT = {"key": "trainforge.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
PAUSE_IMAGE = "localhost/trainforge-test/pause:1"
CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
KUBELET_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
OUTSIDE_DIRS = (Path("/var/log/containers"), Path("/var/lib/cni/results"), Path("/var/lib/cni"),
                Path("/run/containerd/s"), Path("/run/containerd"))


def _sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def _set_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value)


def _kubepods_cgroups() -> list[Path]:
    return [p for p in CGROUP_ROOT.glob("*/kubepods") if p.is_dir()]


def check_host() -> dict[str, Path]:
    """The host programs the node needs; ComponentUnavailable naming what is missing."""
    if os.geteuid() != 0:
        raise ComponentUnavailable("kube_node", "a real kubelet node needs root (mounts, cgroups, network)")
    found: dict[str, Path] = {}
    for name in ("containerd", "containerd-shim-runc-v2", "ctr", "runc"):
        path = shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
        if path is None:
            raise ComponentUnavailable("containerd", f"{name} not found (apt-get install containerd runc)")
        found[name] = Path(path)
    missing = [p for p in CNI_PLUGINS if not (CNI_DIR / p).is_file()]
    if missing:
        raise ComponentUnavailable("cni-plugins", f"{', '.join(missing)} not in {CNI_DIR} "
                                   "(apt-get install containernetworking-plugins)")
    if leftovers := _kubepods_cgroups():
        raise ComponentUnavailable("kube_node", f"another kubelet's cgroups exist ({leftovers[0]}); "
                                   "one kubelet per machine")
    return found


def pause_image_archive(pause_binary: Path, tag: str = PAUSE_IMAGE) -> bytes:
    """A one-layer ``docker save`` archive of the sandbox image (just /pause)."""
    def tar_of(files: dict[str, tuple[bytes, int]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, (data, mode) in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    layer = tar_of({"pause": (pause_binary.read_bytes(), 0o755)})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
                         "config": {"Entrypoint": ["/pause"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    return tar_of({config_name: (config, 0o644), layer_name: (layer, 0o644), "manifest.json": (manifest, 0o644)})


@dataclass
class HostChanges:
    """What the node changes outside its run folder, and how to put it back."""

    run_dir: Path
    bridge: str
    network: str
    sysctls: dict[str, str] = field(default_factory=dict)  # name -> value before
    created_dirs: list[Path] = field(default_factory=list)  # outside dirs that did not exist

    @classmethod
    def record(cls, run_dir: Path, bridge: str, network: str) -> HostChanges:
        changes = cls(run_dir, bridge, network)
        changes.sysctls = {name: _sysctl(name) for name in (*KUBELET_SYSCTLS, "net.ipv4.ip_forward")}
        changes.created_dirs = [d for d in OUTSIDE_DIRS if not d.exists()]
        return changes

    def restore_kubelet_sysctls(self) -> None:
        # kubelet sets them once at start (panic_on_oops=1 on a shared machine is not acceptable).
        for name in KUBELET_SYSCTLS:
            if _sysctl(name) != self.sysctls[name]:
                _set_sysctl(name, self.sysctls[name])

    def undo(self) -> list[str]:
        """Put everything back; what could not be undone (empty when clean)."""
        problems: list[str] = []
        prefix = str(self.run_dir) + "/"
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix) or m == str(self.run_dir)), reverse=True):
            if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for name, value in self.sysctls.items():
            _set_sysctl(name, value)
        logs = Path("/var/log/containers")
        if logs.is_dir():
            for link in logs.iterdir():
                if link.is_symlink() and os.readlink(link).startswith(prefix):
                    link.unlink()
        results = Path("/var/lib/cni/results")
        if results.is_dir():
            for entry in results.iterdir():
                if entry.name.startswith((f"{self.network}-", "cni-loopback-")):
                    entry.unlink(missing_ok=True)
        for cgroup in _kubepods_cgroups():
            for folder in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        for folder in self.created_dirs:  # deepest first (OUTSIDE_DIRS order)
            with contextlib.suppress(OSError):
                folder.rmdir()
        # What is still there is a leak this session caused: say so.
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        problems += [f"mount {m}" for m in mounts if m.startswith(prefix)]
        problems += [f"cgroup {c}" for c in _kubepods_cgroups()]
        problems += [f"sysctl {n}={_sysctl(n)} (was {v})" for n, v in self.sysctls.items() if _sysctl(n) != v]
        if Path(f"/sys/class/net/{self.bridge}").exists():
            problems.append(f"bridge {self.bridge}")
        return problems


@dataclass
class KubeNode:
    name: str
    run_dir: Path
    containerd_socket: Path
    ctr: Path
    processes: list[ServerProcess]
    changes: HostChanges
    started_seconds: float = 0.0  # kubelet start -> node Ready
    dns: PodDns | None = None
    api: Any = None  # the DNS server's API client

    @property
    def log_files(self) -> list[Path]:
        return [p.log_path for p in self.processes]

    def failure(self) -> str | None:
        return next((f for p in self.processes if (f := p.failure())), None)

    def ctr_command(self, *args: str) -> list[str]:
        return [str(self.ctr), "--address", str(self.containerd_socket), "-n", "k8s.io", *args]

    def import_archive(self, archive: bytes | Path) -> None:
        """A ``docker save`` archive into the node's image store."""
        data = archive.read_bytes() if isinstance(archive, Path) else archive
        result = subprocess.run(self.ctr_command("images", "import", "-"), input=data, capture_output=True,
                                timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"ctr images import failed: {result.stderr.decode(errors='replace')}")

    def load_image(self, podman: Any, tag: str) -> None:
        """A Podman image (``podman_engine.PodmanEngine``) into the node, by a pipe."""
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", tag],
                                env=podman.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert save.stdout is not None
        load = subprocess.run(self.ctr_command("images", "import", "-"), stdin=save.stdout,
                              capture_output=True, timeout=600)
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
        if save.wait(timeout=60) != 0 or load.returncode != 0:
            raise RuntimeError(f"loading {tag} into the node failed: {save_err} "
                               f"{load.stderr.decode(errors='replace')}")

    def images(self) -> list[str]:
        out = subprocess.run(self.ctr_command("images", "ls", "-q"), capture_output=True, text=True, timeout=60)
        return out.stdout.split()

    def _shim_pids(self) -> list[int]:
        """containerd's shims outlive it (reparented to init): ours name our socket."""
        needle = str(self.containerd_socket).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"containerd-shim" in argv and needle in argv:
                    pids.append(int(entry.name))
        return pids

    def stop(self, api: Any = None) -> list[str]:
        """Stop the node and undo every host change; what was left (a leak)."""
        if api is not None:  # let the kubelet end its pods while it still runs
            with contextlib.suppress(Exception):
                _delete_node_pods(api, self.name)
        for process in reversed(self.processes):
            if process.name == "kubelet":
                process.stop()
        if self.containerd_socket.exists():
            tasks = subprocess.run(self.ctr_command("tasks", "ls", "-q"), capture_output=True, text=True,
                                   timeout=60).stdout.split()
            for task in tasks:
                subprocess.run(self.ctr_command("tasks", "kill", "-s", "SIGKILL", task), capture_output=True)
            time.sleep(0.5)
            for task in tasks:
                subprocess.run(self.ctr_command("tasks", "delete", "-f", task), capture_output=True)
        for process in self.processes:
            process.stop()
        if self.dns is not None:
            self.dns.stop()
        if self.api is not None:
            self.api.close()
        for pid in self._shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.changes.undo()


def _delete_node_pods(api: Any, node: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    for pod in pods:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}").items:
        time.sleep(0.5)


def _containerd_config(run_dir: Path, runc: Path, base_spec: Path, cni_conf: Path) -> str:
    c = run_dir / "containerd"
    return f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
[grpc]
  address = "{c / 'containerd.sock'}"
[ttrpc]
  address = "{c / 'containerd.sock.ttrpc'}"
[debug]
  address = "{c / 'debug.sock'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # No CAP_SYS_RESOURCE here: oom_score_adj cannot go below 0, and runc fails on
  # containerd's -998 for sandboxes. Clamp to containerd's own score.
  restrict_oom_score_adj = true
  # Network namespaces under our state dir, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      base_runtime_spec = "{base_spec}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{runc}"
        Root = "{c / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_DIR}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""


def _kubelet_config(run_dir: Path, pki: Pki, node_pki: dict[str, Path], port: int, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # kubelet >= 1.35 refuses cgroup v1 hosts by default
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",  # containerd 1.6 has no RuntimeConfig RPC: kubelet falls back to this
        "containerRuntimeEndpoint": f"unix://{run_dir / 'containerd' / 'containerd.sock'}",
        "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        "tlsCertFile": str(node_pki["serving_cert"]), "tlsPrivateKeyFile": str(node_pki["serving_key"]),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki.ca_cert)}},
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(run_dir / "pod-logs"),
        "resolvConf": "",  # no cluster DNS; the host's resolver is not reachable from pods
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "makeIPTablesUtilChains": False,  # no KUBE-* chains on the host
        "nodeStatusReportFrequency": "10s",
        # pod_dns.py on 127.0.0.1:53 (pods with ClusterFirstWithHostNet use it)
        "clusterDNS": ["127.0.0.1"], "clusterDomain": DOMAIN,
        "registerWithTaints": [{"key": NODE_TAINT["key"], "value": NODE_LABEL[1], "effect": NODE_TAINT["effect"]}],
    }


def _base_spec(ctr: Path, shared_mounts: list[tuple[Path, str]]) -> dict[str, Any]:
    spec = json.loads(subprocess.run([str(ctr), "oci", "spec"], capture_output=True, text=True, check=True,
                                     timeout=30).stdout)
    spec["mounts"] += [{"destination": target, "type": "bind", "source": str(source),
                        "options": ["rbind", "ro", "nosuid", "nodev"]} for source, target in shared_mounts]
    return spec


def start_kube_node(cluster: Any, run_dir: Path, log_dir: Path,
                    shared_mounts: list[tuple[Path, str]] | None = None, timeout: float = 120) -> KubeNode:
    """Join a real node to ``cluster`` (kube_cluster.KubeCluster) and return once Ready."""
    tools = check_host()
    kubelet, pause = binaries.locate("kubelet"), binaries.locate("pause")
    run_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"{os.getpid() % 100000}"
    bridge, network = f"tfnode{suffix}"[:15], "trainforge-node"
    changes = HostChanges.record(run_dir, bridge, network)
    node = KubeNode(NODE_NAME, run_dir, run_dir / "containerd" / "containerd.sock", tools["ctr"], [], changes)
    try:
        _start(node, cluster, kubelet, pause, tools, log_dir, shared_mounts or [], timeout)
    except BaseException:
        node.stop()
        raise
    return node


def _start(node: KubeNode, cluster: Any, kubelet: Path, pause: Path, tools: dict[str, Path], log_dir: Path,
           shared_mounts: list[tuple[Path, str]], timeout: float) -> None:
    run_dir, pki = node.run_dir, cluster.pki
    # The node's identity: a client cert the RBAC binding below authorizes, and a serving cert.
    node_pki = {k: run_dir / "pki" / n for k, n in (("client_cert", "node.crt"), ("client_key", "node.key"),
                                                    ("serving_cert", "kubelet.crt"), ("serving_key", "kubelet.key"))}
    node_pki["client_cert"].parent.mkdir(parents=True, exist_ok=True)
    _leaf(pki, node_pki["client_cert"], node_pki["client_key"], f"/O=system:nodes/CN=system:node:{node.name}",
          ["extendedKeyUsage=clientAuth"])
    _leaf(pki, node_pki["serving_cert"], node_pki["serving_key"], f"/CN={node.name}",
          ["extendedKeyUsage=serverAuth", f"subjectAltName=IP:127.0.0.1,DNS:localhost"])
    kubeconfig = run_dir / "node.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cluster.server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "node", "user": {"client-certificate": str(node_pki["client_cert"]),
                                            "client-key": str(node_pki["client_key"])}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "node"}}],
        "current-context": "test"}))
    # Under RBAC alone (no Node authorizer), nodes get the built-in system:node role.
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "trainforge-test-nodes"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}))

    # containerd, its CNI network (a bridge; no default route, no masquerade, no iptables rules)
    cni_conf = run_dir / "cni" / "net.d"
    cni_conf.mkdir(parents=True, exist_ok=True)
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}.0/24"
    (cni_conf / f"10-{node.changes.network}.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": node.changes.network, "plugins": [
            {"type": "bridge", "bridge": node.changes.bridge, "isGateway": True, "isDefaultGateway": False,
             "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(run_dir / "cni" / "ipam"), "ranges": [[{"subnet": subnet}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    base_spec = run_dir / "containerd" / "base-spec.json"
    base_spec.parent.mkdir(parents=True, exist_ok=True)
    base_spec.write_text(json.dumps(_base_spec(tools["ctr"], shared_mounts)))
    config = run_dir / "containerd" / "config.toml"
    config.write_text(_containerd_config(run_dir, tools["runc"], base_spec, cni_conf))
    path = os.pathsep.join([str(tools["containerd-shim-runc-v2"].parent), os.environ.get("PATH", "")])
    containerd = ServerProcess("containerd", [tools["containerd"], "--config", config], log_dir / "containerd.log",
                               env={**os.environ, "PATH": path}).start()
    node.processes.append(containerd)
    wait_until(lambda: subprocess.run(node.ctr_command("version"), capture_output=True).returncode == 0,
               timeout=timeout, what="containerd to answer", watch=[containerd])
    node.import_archive(pause_image_archive(pause))

    try:  # headless-Service names for multi-host rendezvous (no CoreDNS here)
        node.api = cluster.api_client()
        node.dns = PodDns(node.api)
    except OSError as exc:
        raise ComponentUnavailable("pod DNS", f"cannot serve DNS on 127.0.0.1:53 ({exc.strerror or exc})") from exc
    port, healthz = free_ports(2)
    (run_dir / "kubelet").mkdir(exist_ok=True)
    (run_dir / "pod-logs").mkdir(exist_ok=True)
    kubelet_config = run_dir / "kubelet-config.json"
    kubelet_config.write_text(json.dumps(_kubelet_config(run_dir, pki, node_pki, port, healthz)))
    started = time.monotonic()
    process = ServerProcess("kubelet", [
        kubelet, f"--config={kubelet_config}", f"--kubeconfig={kubeconfig}", f"--root-dir={run_dir / 'kubelet'}",
        f"--cert-dir={run_dir / 'kubelet' / 'pki'}", f"--hostname-override={node.name}",
        f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}", "--v=1",
    ], log_dir / "kubelet.log", env={**os.environ, "PATH": path}).start()
    node.processes.append(process)
    from kubernetes import client

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def ready() -> bool:
            try:
                status = core.read_node(node.name).status
            except client.ApiException:
                return False
            return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

        wait_until(ready, timeout=timeout, what=f"the real node {node.name} to be Ready",
                   watch=[*cluster.processes, *node.processes])
    node.started_seconds = time.monotonic() - started
    node.changes.restore_kubelet_sysctls()
