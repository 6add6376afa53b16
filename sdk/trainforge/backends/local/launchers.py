"""How a local trainer is started: a subprocess (process backend) or a
container (container backend, in container.py). One small interface, so the
supervisor's lifecycle is the same for both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from ...contract import Layout
from ...errors import BackendError, ImageNotFound
from .orphans import process_record
from .outputlines import READ_CHUNK, bounded_lines


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
    # True when launch() can show a host folder read-only at a channel's path
    # (FastFile served in place); otherwise such channels are copied.
    mounts_channels: bool

    def layout(self, run_dir: Path) -> Layout:
        """The contract root as the trainer sees it."""

    def check(self, image: str) -> None:
        """Raise ImageNotFound (naming the image) if it cannot be run."""

    def launch(self, image: str, run_dir: Path, env: dict[str, str], gpus: int,
               channels: Mapping[str, str] | None = None) -> Launched:
        """``channels``: channel -> host folder to show read-only (mounts_channels)."""


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
    path = Path(image[len("file://"):] if image.startswith("file://") else image)
    try:
        path = path.expanduser()
    except RuntimeError:  # ~user of no such user: then it is no directory either
        pass
    if not path.is_dir():
        raise ImageNotFound(
            f"the process backend runs trainer code from a source directory, and {image!r} is "
            "not a directory (use the container backend for images)"
        )
    if not ((path / "trainer" / "start.py").is_file() or (path / "trainer" / "start" / "__init__.py").is_file()):
        raise ImageNotFound(f"{path} has no trainer module: expected {path / 'trainer' / 'start.py'}")
    return path.resolve()


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees


def visible_gpus(environ: dict[str, str] | None = None, driver: Path = NVIDIA_GPUS) -> list[str]:
    """The NVIDIA GPUs a process started here could use: those the driver
    lists, narrowed to CUDA_VISIBLE_DEVICES when that is set (CUDA reads it up
    to the first invalid entry)."""
    environ = dict(os.environ) if environ is None else environ
    try:
        count = sum(1 for _ in driver.iterdir())
    except OSError:
        return []
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    devices = []
    for item in (part.strip() for part in listed.split(",")):
        if not item or item.startswith("-"):
            break
        devices.append(item)
    return devices


class _Subprocess:
    def __init__(self, popen: subprocess.Popen[bytes], notes: list[str] | None = None):
        self._popen = popen
        self._notes = notes or []

    def lines(self) -> Iterator[str]:
        stdout = self._popen.stdout
        assert stdout is not None
        yield from self._notes

        def chunks() -> Iterator[bytes]:
            # Raw reads (bufsize=0) of at most READ_CHUNK: a line without a newline never
            # piles up whole. Through the file object, so a closed pipe ends the loop
            # rather than reading whatever file reused its descriptor number.
            try:
                while chunk := stdout.read(READ_CHUNK):
                    yield chunk
            except (OSError, ValueError):
                return

        yield from bounded_lines(chunks(), universal=True)

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
    interpreter), ``pass_env`` (names of withheld variables to hand on anyway,
    a list or "A,B"; see WITHHELD_PREFIXES) and ``on_missing_gpus``.

    The trainer runs on this machine, so a GPU instance type needs that many
    NVIDIA GPUs here (it gets CUDA_VISIBLE_DEVICES narrowed to them); without
    them the job is refused at submit, or with ``on_missing_gpus="cpu"`` runs
    on the CPU with ``SM_NUM_GPUS=0`` and a warning in its log: never on the
    CPU while the contract tells the trainer it has GPUs."""

    kind = "process"
    # A subprocess sees the real filesystem: a link to the store would let it
    # change the dataset, so FastFile channels are copies (reflinks where the
    # filesystem can, see storage.files.clone).
    mounts_channels = False

    def __init__(self, python: str | None = None, on_missing_gpus: str = "error",
                 pass_env: str | list[str] | None = None):
        if on_missing_gpus not in ("error", "cpu"):
            raise BackendError("process backend option on_missing_gpus: expected 'error' or 'cpu', "
                               f"got {on_missing_gpus!r}")
        self.python = python or sys.executable
        self.on_missing_gpus = on_missing_gpus
        self.pass_env = pass_env_names(pass_env)

    def layout(self, run_dir: Path) -> Layout:
        return Layout(str(run_dir))

    def check(self, image: str) -> None:
        trainer_source(image)

    def _gpu_problem(self, gpus: int) -> str | None:
        found = len(visible_gpus())
        if gpus <= found:
            return None
        return (f"the job asks for {gpus} GPU(s), but the process backend runs it on this machine, "
                f"where {found} NVIDIA GPU(s) are visible")

    def check_gpus(self, gpus: int) -> None:
        """At submit: BackendError if the job wants more GPUs than this machine shows."""
        problem = self._gpu_problem(gpus)
        if problem and self.on_missing_gpus != "cpu":
            raise _refusal(problem)

    def launch(self, image: str, run_dir: Path, env: dict[str, str], gpus: int,
               channels: Mapping[str, str] | None = None) -> Launched:
        source = trainer_source(image)
        full_env = {**trainer_environ(dict(os.environ), self.pass_env), **env}
        notes = []
        if gpus > 0:
            problem = self._gpu_problem(gpus)
            if problem is None:
                full_env["CUDA_VISIBLE_DEVICES"] = ",".join(visible_gpus()[:gpus])
            elif self.on_missing_gpus != "cpu":  # the GPUs went away since submit
                raise _refusal(problem)
            else:
                full_env.update({"SM_NUM_GPUS": "0", "CUDA_VISIBLE_DEVICES": ""})
                notes.append(f"trainforge: warning: {problem}; running on the CPU (on_missing_gpus='cpu')")
        # The trainer imports trainforge.runtime from wherever this trainforge lives.
        package_root = str(Path(__file__).resolve().parents[3])
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), package_root, os.environ.get("PYTHONPATH", "")) if p)
        popen = subprocess.Popen(
            [self.python, "-m", "trainer.start", "train"], cwd=source, env=full_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            bufsize=0, start_new_session=True,
        )
        return _Subprocess(popen, notes)


def _refusal(problem: str) -> BackendError:
    return BackendError(
        f"{problem}. Pick a CPU instance type (local, cpu-small, cpu-large), run it where the GPUs "
        "are (the kubernetes backend), or set the process backend option on_missing_gpus='cpu' "
        "to run GPU jobs on the CPU")


def make_launcher(kind: str, options: dict[str, str] | None = None) -> Launcher:
    options = options or {}
    if kind == "process":
        return ProcessLauncher(options.get("python"), options.get("on_missing_gpus", "error"),
                               options.get("pass_env"))
    if kind == "container":
        from .container import ContainerLauncher

        return ContainerLauncher(**options)
    raise ValueError(f"unknown local backend {kind!r} (expected process or container)")
