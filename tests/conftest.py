"""Fixtures that start real servers: MinIO, a Kubernetes control plane with
fake GPU nodes, and Podman serving the Docker API (see tests/infra/README.md).

Servers are session-scoped (started once, on first use); tests stay
independent through per-test buckets, namespaces and names.

A server whose binary is missing makes its tests skip with the reason, except
in CI (``CI`` set), where they fail naming the component and its build error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.infra import binaries, logs, naming
from tests.infra.binaries import ComponentUnavailable
from tests.infra.kube_cluster import KubeCluster, start_kube_cluster
from tests.infra.kube_node import KubeNode, start_kube_node
from tests.infra.minio_server import MinioServer, start_minio
from tests.infra.podman_engine import PodmanEngine, start_podman
from tests.infra.waiting import wait_until

T = TypeVar("T")

# Fixture -> marker, so `-m "not kube"` deselects every test that needs the cluster.
_MARKERS = {
    "minio": ("minio", "needs the real MinIO server"),
    "kube": ("kube", "needs the real Kubernetes control plane"),
    "kube_node": ("kube_node", "needs a real kubelet node (root, containerd)"),
    "container_engine": ("container", "needs the Podman container engine"),
}
_session_dir = pytest.StashKey[Path]()
_servers = pytest.StashKey[dict[str, Any]]()  # fixture name -> object with .log_files


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in _MARKERS.values():
        config.addinivalue_line("markers", f"{marker}: {text}")
    config.stash[_servers] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, (marker, _) in _MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        # Only the servers this test used, so a MinIO test does not print kube logs.
        servers = item.config.stash.get(_servers, {})
        files = [f for name, server in servers.items()
                 if name in getattr(item, "fixturenames", ()) for f in server.log_files]
        if files:
            report.sections.append(("trainforge server logs", logs.format_tails(files)))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    folder = session.config.stash.get(_session_dir, None)
    if folder is not None:
        failed = exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if logs.finish_session(folder, failed):
            session.config.stash[_session_dir] = folder / "logs"
        else:
            del session.config.stash[_session_dir]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(_session_dir, None)
    if folder is not None and folder.exists():
        terminalreporter.write_line(f"trainforge server logs kept in {folder}")


def _start(config: pytest.Config, name: str, start: Callable[[], T]) -> T:
    """Start a server; a missing component skips (outside CI) or fails (in CI)."""
    try:
        server = start()
    except ComponentUnavailable as exc:
        unavailable = exc
    else:
        if hasattr(server, "log_files"):
            config.stash[_servers][name] = server
        return server
    # Outside the except block, so the report is the one message, not a chain.
    message = f"component {unavailable.name!r} is unavailable: {unavailable.reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
    return server


def _check_alive(server: Any) -> None:
    failure = server.failure()
    if failure:
        pytest.fail(f"a server of the test bed died earlier in this session: {failure}",
                    pytrace=False)


@pytest.fixture(scope="session")
def test_bed_dir(pytestconfig: pytest.Config) -> Path:
    """This session's folder: run/ for server data, logs/ for server logs."""
    folder = logs.new_session_dir()
    pytestconfig.stash[_session_dir] = folder
    return folder


# --- Client tools ------------------------------------------------------------

@pytest.fixture(scope="session")
def helm_binary(pytestconfig: pytest.Config) -> Path:
    """Path of the pinned ``helm``; run it with ``env=kube.env()``."""
    return _start(pytestconfig, "helm", lambda: binaries.locate("helm"))


@pytest.fixture(scope="session")
def mc_binary(pytestconfig: pytest.Config) -> Path:
    """Path of the pinned MinIO client; run it with ``env=minio.mc_env()`` (alias ``test``)."""
    return _start(pytestconfig, "mc", lambda: binaries.locate("mc"))


# --- MinIO -------------------------------------------------------------------

@pytest.fixture(scope="session")
def minio(pytestconfig: pytest.Config, test_bed_dir: Path) -> Iterator[MinioServer]:
    """The session's MinIO server: ``endpoint``, ``access_key``, ``secret_key``, ``region``."""
    server = _start(pytestconfig, "minio", lambda: start_minio(
        test_bed_dir / "run" / "minio", test_bed_dir / "logs"))
    yield server
    server.stop()


@dataclass(frozen=True)
class Bucket:
    """A fresh, empty bucket on the session's MinIO."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    region: str

    def uri(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    def env(self) -> dict[str, str]:
        """AWS_* variables under which boto3 (or a container) reaches the bucket."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


@pytest.fixture
def minio_bucket(minio: MinioServer, request: pytest.FixtureRequest) -> Iterator[Bucket]:
    """A new bucket for this test (named after it), emptied and removed afterwards."""
    _check_alive(minio)
    bucket = Bucket(naming.dns_label(request.node.nodeid), minio.endpoint, minio.access_key,
                    minio.secret_key, minio.region)
    s3 = bucket.s3_client()
    s3.create_bucket(Bucket=bucket.name)
    yield bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket.name):
        objects = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                   for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objects:
            s3.delete_objects(Bucket=bucket.name, Delete={"Objects": objects, "Quiet": True})
    s3.delete_bucket(Bucket=bucket.name)


# --- Kubernetes --------------------------------------------------------------

@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config, test_bed_dir: Path) -> Iterator[KubeCluster]:
    """The session's cluster: etcd, apiserver, controller-manager, scheduler and
    kwok with 4 fake GPU nodes (8 x nvidia.com/gpu each) and 2 CPU nodes."""
    cluster = _start(pytestconfig, "kube", lambda: start_kube_cluster(
        test_bed_dir / "run" / "kube", test_bed_dir / "logs" / "kube"))
    yield cluster
    cluster.stop()


HOST_SITE_PACKAGES = "/opt/host-site-packages"  # where pods on the real node see this run's packages


def host_package_mounts(folder: Path) -> list[tuple[Path, str]]:
    """This run's site-packages (PyTorch) read-only in every container of the
    real node, on sys.path through a .pth file in the images' venv: the same
    CPython minor version, so compiled wheels load unchanged. Nothing is baked in."""
    import importlib.util
    import sys

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return []
    site_packages = Path(spec.origin).resolve().parents[1]
    pth = folder / "host-site-packages.pth"
    folder.mkdir(parents=True, exist_ok=True)
    pth.write_text(HOST_SITE_PACKAGES + "\n")
    pth.chmod(0o644)
    venv_site = f"/opt/venv/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    return [(site_packages, HOST_SITE_PACKAGES), (pth, f"{venv_site}/host-site-packages.pth")]


@pytest.fixture(scope="session")
def kube_node(pytestconfig: pytest.Config, kube: KubeCluster, test_bed_dir: Path) -> Iterator[KubeNode]:
    """A real kubelet node (containerd, runc, a CNI bridge) joined to ``kube``:
    tainted and labelled ``trainforge.dev/real-node``, this run's site-packages
    mounted in every container (``host_package_mounts``). Every host change is
    undone at the end; a leak fails the session's last test report loudly."""
    run = test_bed_dir / "run" / "node"
    node = _start(pytestconfig, "kube_node", lambda: start_kube_node(
        kube, run, test_bed_dir / "logs" / "node", shared_mounts=host_package_mounts(run / "mounts")))
    yield node
    with kube.api_client() as api:
        leaks = node.stop(api)
    assert not leaks, f"the real node left host changes behind: {leaks}"


@pytest.fixture
def kube_api(kube: KubeCluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` (cluster-admin) for this test."""
    _check_alive(kube)
    with kube.api_client() as api:
        yield api


@pytest.fixture
def kube_namespace(
    kube: KubeCluster, kube_api: Any, request: pytest.FixtureRequest,
) -> Iterator[str]:
    """A new namespace for this test (its name), deleted afterwards without waiting."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = naming.dns_label(request.node.nodeid)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"trainforge.dev/test": "true"})))
    # Pods are refused until the namespace's default service account exists.
    wait_until(lambda: core.read_namespaced_service_account("default", name), timeout=30,
               what=f"service account {name}/default", watch=kube.processes)
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


# --- Container engine --------------------------------------------------------

@pytest.fixture(scope="session")
def container_engine(pytestconfig: pytest.Config, test_bed_dir: Path) -> Iterator[PodmanEngine]:
    """Podman serving the Docker API: ``docker_host`` (unix://...), ``base_image``
    (localhost/trainforge/python-base:<version>), ``docker_client()``."""
    engine = _start(pytestconfig, "container_engine", lambda: start_podman(
        test_bed_dir / "run" / "podman", test_bed_dir / "logs"))
    yield engine
    engine.stop()


@pytest.fixture
def docker_client(container_engine: PodmanEngine) -> Iterator[Any]:
    """A ``docker.DockerClient`` on the session's Podman socket."""
    _check_alive(container_engine)
    client = container_engine.docker_client()
    yield client
    client.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TRAINFORGE_HOME; no local job or tuning job outlives the test."""
    from tests.integration.local_jobs import fresh_home

    yield from fresh_home(tmp_path, monkeypatch)
