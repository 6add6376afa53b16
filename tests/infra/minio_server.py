"""A real MinIO server on a free loopback port."""

from __future__ import annotations

import os
import secrets
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import binaries
from .ports import free_ports
from .processes import ServerProcess
from .waiting import wait_until


@dataclass
class MinioServer:
    """Endpoint and root credentials of a running MinIO; ``stop()`` ends it."""

    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    data_dir: Path
    process: ServerProcess
    region: str = "us-east-1"
    log_files: list[Path] = field(default_factory=list)

    @property
    def host_port(self) -> str:
        return self.endpoint.removeprefix("http://")

    def mc_env(self, alias: str = "test") -> dict[str, str]:
        """Environment under which ``mc`` knows this server as ``alias``."""
        host = f"http://{self.access_key}:{self.secret_key}@{self.host_port}"
        return {**os.environ, f"MC_HOST_{alias}": host}

    def failure(self) -> str | None:
        return self.process.failure()

    def stop(self) -> None:
        self.process.stop()


def start_minio(run_dir: Path, log_dir: Path, timeout: float = 60) -> MinioServer:
    minio = binaries.locate("minio")
    port, console_port = free_ports(2)
    access_key, secret_key = "trainforge", secrets.token_hex(16)
    data_dir = run_dir / "minio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        # Tests fill small disks; do not refuse writes at MinIO's default free-space margin.
        "MINIO_CI_CD": "on",
    }
    process = ServerProcess(
        "minio",
        [minio, "server", "--quiet", "--address", f"127.0.0.1:{port}",
         "--console-address", f"127.0.0.1:{console_port}", data_dir],
        log_dir / "minio.log", env,
    ).start()
    server = MinioServer(
        f"http://127.0.0.1:{port}", access_key, secret_key, data_dir, process,
        log_files=[process.log_path],
    )
    try:
        wait_until(
            lambda: _status(f"{server.endpoint}/minio/health/ready") == 200,
            timeout=timeout, what="MinIO to be ready", watch=[process],
        )
    except BaseException:
        process.stop()
        raise
    return server


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)
