"""Podman serving the Docker API on a private unix socket, with the base image.

Every session gets its own containers.conf, storage and socket under its run
dir, so tests never touch (or depend on) the machine's own containers. The
base image comes from the read-only image store that ``prepare-engine.sh``
caches (mounted as an additional image store: no copy, no start-up cost), or,
when only the rootfs tarball is cached, is ``podman import``ed (~15 s).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import binaries
from .processes import ServerProcess
from .waiting import wait_until

BASE_IMAGE_REPO = "localhost/trainforge/python-base"
# Same as prepare-engine.sh's import_store: keep the two in step.
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


def base_image_tag() -> str:
    return f"{BASE_IMAGE_REPO}:{binaries.versions()['BASE_IMAGE_VERSION']}"


def base_image_dir(env: dict[str, str] | None = None) -> Path:
    version = binaries.versions()["BASE_IMAGE_VERSION"]
    return binaries.cache_root(env) / "images-v1" / f"python-base-{version}"


def base_image_store(env: dict[str, str] | None = None) -> Path | None:
    """The cached image store holding the base image, if prepare-engine.sh made it."""
    folder = base_image_dir(env)
    return folder / "store" if (folder / ".store-ok").exists() else None


def base_image_tarball(env: dict[str, str] | None = None) -> Path:
    """The cached rootfs tarball, or ComponentUnavailable saying how to build it."""
    folder = base_image_dir(env)
    tarball = folder / "rootfs.tar.gz"
    if (folder / ".ok").exists() and tarball.is_file():
        return tarball
    tail = binaries.log_tail(folder / "build.log")
    if tail:
        detail = f"the rootfs build failed ({folder / 'build.log'}); last lines:\n{tail}\n"
    else:
        detail = f"no rootfs in {folder}; "
    hint = "run tests/infra/prepare-engine.sh (needs root and debootstrap)"
    raise binaries.ComponentUnavailable("python-base image", detail + hint)


def containers_conf(run_dir: Path) -> str:
    # cgroupfs: there is no systemd to ask for cgroups on CI machines and
    # containers. default_ulimits = []: the packaged default raises nofile above
    # what an unprivileged CI sandbox allows, and runc then refuses to start.
    return f"""\
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = "{run_dir}/events.log"
tmp_dir = "{run_dir}/tmp"
static_dir = "{run_dir}/storage/libpod"
volume_path = "{run_dir}/storage/volumes"

[network]
network_config_dir = "{run_dir}/networks"
"""


def storage_conf(run_dir: Path, image_store: Path | None = None) -> str:
    conf = f"""\
[storage]
driver = "overlay"
graphroot = "{run_dir}/storage"
runroot = "{run_dir}/runroot"
"""
    if image_store is not None:
        # Read-only: sessions share it, and `podman system reset` leaves it alone.
        conf += f'\n[storage.options]\nadditionalimagestores = ["{image_store}"]\n'
    return conf


@dataclass
class PodmanEngine:
    """A running ``podman system service``; talk to it with any Docker client."""

    socket_path: Path
    base_image: str  # e.g. localhost/trainforge/python-base:bookworm-py3-1
    run_dir: Path
    env: dict[str, str]  # CONTAINERS_CONF/CONTAINERS_STORAGE_CONF for the podman CLI
    process: ServerProcess
    import_log: Path

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST value: ``unix:///.../podman.sock``."""
        return f"unix://{self.socket_path}"

    @property
    def log_files(self) -> list[Path]:
        return [self.import_log, self.process.log_path]

    def docker_client(self) -> Any:
        """A ``docker.DockerClient`` bound to this engine."""
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=300)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The podman CLI on this engine's storage."""
        return _podman(self.env, *args, check=check)

    def failure(self) -> str | None:
        return self.process.failure()

    def stop(self) -> None:
        self.process.stop()
        # Unmounts overlay layers and deletes the storage; a plain rm -rf
        # would trip over mounts still held by stopped containers.
        _podman(self.env, "system", "reset", "--force", check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def start_podman(run_dir: Path, log_dir: Path, timeout: float = 60) -> PodmanEngine:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            raise binaries.ComponentUnavailable(
                "podman", f"{tool} is not installed (apt-get install podman runc)")
    tarball = base_image_tarball()
    if len(str(run_dir / "podman.sock")) > _SOCKET_PATH_MAX:
        run_dir = Path(tempfile.mkdtemp(prefix="tf-podman-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "containers.conf").write_text(containers_conf(run_dir))
    (run_dir / "storage.conf").write_text(storage_conf(run_dir, base_image_store()))
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(run_dir / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(run_dir / "storage.conf"),
    }
    tag = base_image_tag()
    import_log = log_dir / "podman-import.log"
    import_log.parent.mkdir(parents=True, exist_ok=True)
    if _podman(env, "image", "exists", tag, check=False).returncode == 0:
        import_log.write_text(f"{tag} found in the image store {base_image_store()}\n")
    else:
        _import(env, tarball, tag, import_log)
    socket_path = run_dir / "podman.sock"
    process = ServerProcess(
        "podman", ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        log_dir / "podman.log", env,
    ).start()
    engine = PodmanEngine(socket_path, tag, run_dir, env, process, import_log)
    try:
        wait_until(lambda: _ping(socket_path), timeout=timeout,
                   what="the Podman Docker API socket", watch=[process])
    except BaseException:
        engine.stop()
        raise
    return engine


def _import(env: dict[str, str], tarball: Path, tag: str, log_path: Path) -> None:
    changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
    with open(log_path, "w") as log:
        result = subprocess.run(["podman", "import", *changes, str(tarball), tag],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(
            f"podman import of {tarball} failed; {log_path}:\n{binaries.log_tail(log_path)}")


def _ping(socket_path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(str(socket_path))
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        status_line = s.recv(64).split(b"\r\n", 1)[0]
        return status_line.split(b" ")[1:2] == [b"200"]


def _podman(
    env: dict[str, str], *args: str, check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result
