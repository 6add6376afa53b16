"""How a local trainer is started: a subprocess (process backend) or a
container (container backend, in container.py). One small interface, so the
supervisor's lifecycle is the same for both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ...contract import Layout
from ...errors import ImageNotFound
from .orphans import process_record


class Launched(Protocol):
    def lines(self) -> Iterator[str]:
        """Output lines (stdout and stderr) until the trainer's output closes."""
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def cleanup(self) -> None: ...
    def record(self) -> dict[str, Any]:
        """How another process finds it to end it (orphans.py)."""


class Launcher(Protocol):
    kind: str

    def layout(self, run_dir: Path) -> Layout:
        """The contract root as the trainer sees it."""

    def check(self, image: str) -> None:
        """Raise ImageNotFound (naming the image) if it cannot be run."""

    def launch(self, image: str, run_dir: Path, env: dict[str, str], gpus: int) -> Launched: ...


# What the submitter's environment holds that a process trainer is not given unless
# the backend option ``pass_env`` names it: cloud and object-store credentials (the
# supervisor uses them to stage; the trainer's data arrives in its folders), access to
# clusters, container engines and agents, and trainforge's own settings. The trainer
# runs as the submitting user, so this is not a sandbox; it keeps a job's code, or a
# log line it prints, from holding the submitter's keys by default.
WITHHELD_PREFIXES = (
    "AWS_", "MINIO_", "MC_HOST", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_", "AZURE_", "ARM_",
    "TRAINFORGE_", "DOCKER_", "CONTAINER_", "PODMAN_", "KUBE", "VAULT_", "SSH_", "GPG_",
)
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "APIKEY",
                 "ACCESS_KEY", "PRIVATE_KEY", "SESSION_KEY", "AUTH")


def withheld(name: str) -> bool:
    """Is ``name`` kept from a process trainer unless passed on (WITHHELD_PREFIXES)?"""
    upper = name.upper()
    return upper.startswith(WITHHELD_PREFIXES) or any(word in upper for word in _SECRET_WORDS)


def pass_env_names(value: str | list[str] | None) -> frozenset[str]:
    """The ``pass_env`` option: names, a list or a comma-separated string."""
    if not value:
        return frozenset()
    names = value.split(",") if isinstance(value, str) else list(value)
    return frozenset(n.strip() for n in names if n.strip())


def trainer_environ(environ: dict[str, str], passed: frozenset[str] = frozenset()) -> dict[str, str]:
    """The part of the submitter's environment a process trainer inherits."""
    return {k: v for k, v in environ.items() if k in passed or not withheld(k)}


def trainer_source(image: str) -> Path:
    """The source directory the process backend runs ``python -m trainer.start`` in."""
    path = Path(image[len("file://"):] if image.startswith("file://") else image).expanduser()
    if not path.is_dir():
        raise ImageNotFound(
            f"the process backend runs trainer code from a source directory, and {image!r} is "
            "not a directory (use the container backend for images)"
        )
    if not ((path / "trainer" / "start.py").is_file() or (path / "trainer" / "start" / "__init__.py").is_file()):
        raise ImageNotFound(f"{path} has no trainer module: expected {path / 'trainer' / 'start.py'}")
    return path.resolve()


class _Subprocess:
    def __init__(self, popen: subprocess.Popen[str]):
        self._popen = popen

    def lines(self) -> Iterator[str]:
        assert self._popen.stdout is not None
        for line in self._popen.stdout:
            yield line.rstrip("\n")

    def _signal(self, sig: int) -> None:
        # The whole process group: data loader workers and torchrun children too.
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None: self._signal(signal.SIGTERM)
    def kill(self) -> None: self._signal(signal.SIGKILL)
    def poll(self) -> int | None: return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def cleanup(self) -> None:
        if self._popen.stdout:
            self._popen.stdout.close()

    def record(self) -> dict[str, Any]:
        return process_record(self._popen.pid)  # its own session: pid == process group id


class ProcessLauncher:
    """Runs ``python -m trainer.start`` from a source directory, with the
    contract relocated into the job's run directory. Options: ``python`` (the
    interpreter) and ``pass_env`` (names of withheld variables to hand on anyway,
    a list or "A,B"; see WITHHELD_PREFIXES)."""

    kind = "process"

    def __init__(self, python: str | None = None, pass_env: str | list[str] | None = None):
        self.python = python or sys.executable
        self.pass_env = pass_env_names(pass_env)

    def layout(self, run_dir: Path) -> Layout:
        return Layout(str(run_dir))

    def check(self, image: str) -> None:
        trainer_source(image)

    def launch(self, image: str, run_dir: Path, env: dict[str, str], gpus: int) -> Launched:
        source = trainer_source(image)
        full_env = {**trainer_environ(dict(os.environ), self.pass_env), **env}
        # The trainer imports trainforge.runtime from wherever this trainforge lives.
        package_root = str(Path(__file__).resolve().parents[3])
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), package_root, os.environ.get("PYTHONPATH", "")) if p)
        popen = subprocess.Popen(
            [self.python, "-m", "trainer.start", "train"], cwd=source, env=full_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, errors="replace", start_new_session=True,
        )
        return _Subprocess(popen)


def make_launcher(kind: str, options: dict[str, str] | None = None) -> Launcher:
    options = options or {}
    if kind == "process":
        return ProcessLauncher(options.get("python"), options.get("pass_env"))
    if kind == "container":
        from .container import ContainerLauncher

        return ContainerLauncher(**options)
    raise ValueError(f"unknown local backend {kind!r} (expected process or container)")
