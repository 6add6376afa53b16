"""The container backend's launcher: the trainer runs in its image on a local
container engine, through the Docker API (``docker`` SDK), so Docker and
Podman (``podman system service``) both work. ``DOCKER_HOST`` picks the engine,
as it does for the docker CLI; the ``docker_host`` option overrides it.

What a container gets (SageMaker's ``docker run <image> train``):

- the job's run directory bind-mounted at ``/opt/ml``. It is owned by the
  submitting user and nothing in it is world-writable: the run folder and
  ``input/`` are the host's (0755, so the trainer reads but cannot plant
  entries there), and only ``model/``, ``output/`` (with ``output/data/``) and
  ``checkpoints/`` are handed to the container's user (0700, chowned to it);
- a non-root user: the submitting user's uid:gid when that is not root (the
  trainer's files are then the user's own), otherwise the fixed unprivileged
  ``65532:65532``. The ``user`` option picks another: ``"host"`` (the
  submitting user's uid:gid) or numbers ``UID[:GID]`` (GID defaults to UID;
  ``0`` only when asked). Names are refused, since the run folder has to be
  handed to a uid. Handing it to a uid other than one's own needs root. On a
  rootless engine (Docker or Podman run by a user) the default is the
  container's root, which is the submitting user on the host and holds no
  capability; there, leave ``user`` unset;
- no privileges: all capabilities dropped and ``no-new-privileges``, so a
  setuid binary in the image gains nothing;
- the contract's environment and nothing of the host's;
- ``network_mode=host``, so a trainer reaches a local MinIO or other services
  on the machine exactly as the process backend's trainers do;
- ``/dev/shm`` sized for PyTorch data loaders (a quarter of the machine's
  memory, at least 1 GiB, at most 32 GiB; ``shm_size`` overrides it), and an
  init process (``--init``) that forwards SIGTERM and reaps data loader
  workers;
- GPUs when the instance type asks for them: ``DeviceRequests`` as ``docker run
  --gpus N`` sends them (Docker with the NVIDIA Container Toolkit). An engine
  that cannot give GPUs is a clear error naming the fix, never a silent CPU
  run: Podman's Docker API ignores ``DeviceRequests``, so with Podman a GPU
  instance type is refused at submit; Docker without the toolkit refuses the
  request at launch, and the job fails saying why. ``on_missing_gpus="cpu"`` runs such jobs on the CPU
  instead, with a warning in the job's log and ``SM_NUM_GPUS=0``.
- its output read through an attach made between create and start (as
  ``docker run`` does): all of it, even from a trainer that exits at once, and
  without Podman's log follower, which polls every 250 ms; the followed log
  stream only where the engine refuses the attach;
- labels ``trainforge.dev/job``, ``trainforge.dev/attempt`` and
  ``trainforge.dev/managed-by``; a deterministic name per job folder and attempt;
- FastFile channels of the embedded store (or ``file://``): the store's folder
  bind-mounted read-only at ``/opt/ml/input/data/<channel>``, so the trainer
  reads the dataset in place and cannot change it. Which folders are mounted
  comes from the job's spec (the supervisor's ``channels``), never from links
  found in the run folder.

The host side never follows a link the container could have written: every
read, copy, upload, chown or write below the run folder goes through
:mod:`trainforge.untrusted` (directory fds, ``O_NOFOLLOW``).

Options (``get_backend("container", **options)``, kept in the job's folder so
the supervisor uses the same): ``docker_host``, ``shm_size``, ``user``,
``volumes`` (extra ``SRC:DST[:ro|rw]`` bind mounts, a list or a comma-separated
string), ``pull`` (``missing``: pull an image that is not present, the
default; ``never``), ``on_missing_gpus`` (``error`` or ``cpu``) and ``init``
(``"false"`` to run the entrypoint as PID 1).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped]
import docker.errors  # type: ignore[import-untyped]
import docker.models.containers  # type: ignore[import-untyped]
import docker.types  # type: ignore[import-untyped]
import docker.utils.socket  # type: ignore[import-untyped]
import requests

from ... import untrusted
from ...contract import CONTAINER_ROOT, Layout
from ...errors import BackendError, EngineUnavailable, ImageNotFound
from ...images import connect
from ...names import CONTAINER_ATTEMPT_LABEL, CONTAINER_JOB_LABEL, CONTAINER_MANAGED_BY_LABEL
from .orphans import container_record
from .outputlines import LineSplitter

MANAGED_BY = "trainforge-local"
LABEL_JOB = CONTAINER_JOB_LABEL
LABEL_ATTEMPT = CONTAINER_ATTEMPT_LABEL
LABEL_MANAGED_BY = CONTAINER_MANAGED_BY_LABEL
SHM_MIN = 1 << 30
SHM_MAX = 32 << 30
IMAGE_CHECK_REUSE_SECONDS = 30.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def default_shm_size(memory_bytes: int | None = None) -> int:
    """A quarter of the machine's memory, clamped to [1 GiB, 32 GiB]."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory_bytes = 4 * SHM_MIN
    return max(SHM_MIN, min(SHM_MAX, memory_bytes // 4))


def parse_volumes(volumes: str | list[str] | None) -> dict[str, dict[str, str]]:
    """``SRC:DST[:ro|rw]`` entries as the docker SDK's ``volumes`` mapping."""
    if not volumes:
        return {}
    entries = [v.strip() for v in volumes.split(",")] if isinstance(volumes, str) else list(volumes)
    mounts: dict[str, dict[str, str]] = {}
    for entry in filter(None, entries):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") \
                or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise BackendError(f"container backend option volumes: {entry!r} is not SRC:DST[:ro|rw] "
                               "with an absolute DST")
        source = str(Path(parts[0]).expanduser().resolve())
        mounts[source] = {"bind": parts[1], "mode": parts[2] if len(parts) == 3 else "rw"}
    return mounts


def container_name(run_dir: Path, job: str, attempt: str) -> str:
    """Deterministic per job folder and attempt, so a stale container of the
    same attempt is recognised, and two homes never collide."""
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return f"trainforge-{job}-{attempt}-{digest}"


WRITABLE = ("model", "output", "output/data", "checkpoints")  # below the run folder
NONROOT_ID = 65532  # the container's uid:gid when the submitter is root


def container_user(user: str | None, host: tuple[int, int] | None = None,
                   rootless: bool = False) -> tuple[int, int]:
    """The uid:gid a container runs as (see the module docstring). On a rootless
    engine the container's root *is* the submitting user on the host (and any
    other uid a subordinate one), so the default there is 0:0."""
    uid, gid = host if host is not None else (os.getuid(), os.getgid())
    if user is None:
        if rootless and uid != 0:
            return 0, 0
        return (uid, gid) if uid != 0 else (NONROOT_ID, NONROOT_ID)
    if user == "host":
        return uid, gid
    parts = user.split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise BackendError(f"container backend option user: expected 'host', UID or UID:GID (numbers: "
                           f"the run folder is handed to that uid), got {user!r}")
    return int(parts[0]), int(parts[-1])


def prepare_run_dir(run_dir: Path, uid: int, gid: int, channels: list[str]) -> None:
    """The run folder as a container gets it: the host's and 0755, its writable
    folders real directories (a link left there is removed) owned by uid:gid
    (host ids) and 0700, each channel's mount point an empty folder. Nothing is
    followed."""
    root = str(run_dir)
    os.chmod(root, 0o755)
    for rel in WRITABLE:
        untrusted.make_dirs(root, rel, 0o700)
        with untrusted.opened_dir(root, rel) as fd:
            os.fchmod(fd, 0o700)
    for channel in channels:
        untrusted.reset_dir(root, f"input/data/{channel}")
    if (uid, gid) == (os.getuid(), os.getgid()):
        return
    try:
        for rel in ("model", "output", "checkpoints"):
            untrusted.chown_tree(root, rel, uid, gid)
    except PermissionError as exc:
        raise BackendError(
            f"cannot hand the run folder {run_dir} to the container user {uid}:{gid} ({exc.strerror}): "
            "only root can give files to another uid; leave the container backend option user unset "
            "(or 'host') to run the trainer as yourself") from exc


class _Container:
    """One started container; the Launched side of the protocol."""

    def __init__(self, container: Any, notes: list[str], docker_host: str, output: Any = None):
        self._container = container
        self._notes = notes
        self._output = output  # the attach socket opened before start, or None: read the logs
        self._reading = False
        self._docker_host = docker_host
        self._exit_code: int | None = None
        self._done = threading.Event()
        threading.Thread(target=self._wait, name=f"wait-{container.name}", daemon=True).start()

    def _wait(self) -> None:

        try:
            result = self._container.wait()
            self._exit_code = int(result.get("StatusCode", 255))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            # The engine went away under a running job: report it, do not hang.
            print(f"lost the container {self._container.name} ({type(exc).__name__}: {exc}); "
                  "counting the attempt as failed", file=sys.stderr, flush=True)
            self._exit_code = 125
        finally:
            self._done.set()

    def lines(self) -> Iterator[str]:

        self._reading = True
        yield from self._notes
        # The stream's chunks go through the same bounded splitter as a pipe's,
        # one per stream when the frames say which (stdout and stderr arrive
        # interleaved, a frame of one in the middle of a line of the other).
        error: list[str] = []
        splitters: dict[int, LineSplitter] = {}

        def frames() -> Iterator[tuple[int, bytes]]:
            try:
                if self._output is None:
                    for chunk in self._container.logs(stream=True, follow=True, stdout=True, stderr=True):
                        yield 1, chunk
                    return
                try:
                    yield from docker.utils.socket.frames_iter(self._output, False)
                finally:
                    self._output.close()
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                error.append(f"trainforge: log stream of {self._container.name} ended: {exc}")

        for stream, data in frames():
            splitter = splitters.get(stream) or splitters.setdefault(stream, LineSplitter())
            yield from splitter.feed(data)
        for splitter in splitters.values():
            yield from splitter.end()
        yield from error

    def _signal(self, sig: str) -> None:

        if self._done.is_set():
            return
        try:
            self._container.kill(signal=sig)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            # Most often "container is not running": it ended while we decided to stop it.
            if not self._done.wait(1.0):
                raise

    def terminate(self) -> None: self._signal("SIGTERM")
    def kill(self) -> None: self._signal("SIGKILL")
    def poll(self) -> int | None: return self._exit_code if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise TimeoutError(f"container {self._container.name} still running after {timeout} s")
        assert self._exit_code is not None
        return self._exit_code

    def cleanup(self) -> None:

        if self._output is not None and not self._reading:  # lines() closes what it reads
            self._output.close()
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            print(f"could not remove container {self._container.name}: {exc}", file=sys.stderr, flush=True)


    def record(self) -> dict[str, Any]:
        return container_record(self._container.id, self._container.name, self._docker_host)


def remove_container(docker_host: str, container_id: str) -> bool:
    """Force-remove a container (the trainer of a supervisor that died); False
    when it is already gone or the engine is (and the container with it)."""
    try:
        connect(docker_host).containers.get(container_id).remove(force=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException, EngineUnavailable):
        return False
    return True


class ContainerLauncher:
    """Runs the job's image on a Docker-API engine (Docker or Podman)."""

    kind = "container"
    mounts_channels = True

    def __init__(
        self,
        docker_host: str | None = None,
        shm_size: str | int | None = None,
        user: str | None = None,
        volumes: str | list[str] | None = None,
        pull: str = "missing",
        on_missing_gpus: str = "error",
        init: str | bool = True,
        **unknown: Any,
    ):
        if unknown:
            known = "docker_host, shm_size, user, volumes, pull, on_missing_gpus, init"
            raise BackendError(f"unknown container backend option(s) {', '.join(sorted(unknown))} "
                               f"(known: {known})")
        if pull not in ("missing", "never"):
            raise BackendError(f"container backend option pull: expected 'missing' or 'never', got {pull!r}")
        if on_missing_gpus not in ("error", "cpu"):
            raise BackendError("container backend option on_missing_gpus: expected 'error' or 'cpu', "
                               f"got {on_missing_gpus!r}")
        if isinstance(init, str):
            if init.lower() not in _TRUE + _FALSE:
                raise BackendError(f"container backend option init: expected true or false, got {init!r}")
            init = init.lower() in _TRUE
        self.docker_host = docker_host
        self.shm_size: str | int = shm_size if shm_size else default_shm_size()
        self.user = user
        container_user(user)  # a bad value is an error now, not at launch
        self.volumes = parse_volumes(volumes)
        self.pull = pull
        self.on_missing_gpus = on_missing_gpus
        self.init = init
        self._client: Any = None
        self._found: dict[str, float] = {}  # image -> when check() last found it

    # -- the engine -------------------------------------------------------------
    @property
    def engine_address(self) -> str:
        return self.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    @property
    def client(self) -> Any:
        """The docker SDK client, connected on first use (constructing the
        launcher, e.g. to list jobs, never needs the engine)."""
        if self._client is None:
            self._client = connect(self.docker_host)
        return self._client

    def _is_rootless(self) -> bool:
        """A rootless engine (Docker or Podman) says so in its security options."""
        try:
            options = self.client.info().get("SecurityOptions") or []
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        return any("rootless" in str(option) for option in options)

    def _is_podman(self) -> bool:
        """Podman's Docker API says so in its ping headers (cheaper than /version)."""
        api = self.client.api
        try:
            return "Libpod-Api-Version" in api.get(api.base_url + "/_ping", timeout=10).headers
        except requests.exceptions.RequestException:
            return False

    # -- Launcher protocol ------------------------------------------------------------
    def layout(self, run_dir: Path) -> Layout:
        return Layout(CONTAINER_ROOT)

    def check(self, image: str) -> None:

        # submit_job checks before it uploads data and submit again: one look-up
        # then (an image removed in between fails the launch, saying so).
        found = self._found.get(image)
        if found is not None and time.monotonic() - found < IMAGE_CHECK_REUSE_SECONDS:
            return
        client = self.client
        try:
            client.api.inspect_image(image)
            self._found[image] = time.monotonic()
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 404:
                raise BackendError(f"cannot look up image {image!r} on {self.engine_address}: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailable(f"lost the container engine at {self.engine_address}: {exc}") from exc
        if self.pull == "never":
            raise ImageNotFound(f"image {image!r} is not present on the container engine at "
                                f"{self.engine_address} (and the pull option is 'never'): build it "
                                "(trainforge build DIR -t TAG) or pull it first")
        try:
            client.images.pull(image)
        except (docker.errors.APIError, docker.errors.ImageNotFound) as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            hint = (" (the registry refused the credentials: docker login to it first)"
                    if any(w in str(explanation).lower() for w in ("unauthorized", "denied", "authentication"))
                    else "")
            raise ImageNotFound(
                f"image {image!r} is not present on the container engine at {self.engine_address} "
                f"and could not be pulled{hint}: {explanation}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailable(f"lost the container engine at {self.engine_address}: {exc}") from exc

    def check_gpus(self, gpus: int) -> None:
        """At submit: BackendError if the job wants GPUs this engine cannot give
        (Podman's Docker API); Docker's refusal can only be seen at launch."""
        if gpus > 0 and self.on_missing_gpus == "error" and self._is_podman():
            self._without_gpus({}, _podman_gpus(gpus))

    def launch(self, image: str, run_dir: Path, env: dict[str, str], gpus: int,
               channels: Mapping[str, str] | None = None) -> _Container:

        run_dir = run_dir.resolve()
        channels = dict(channels or {})
        rootless = os.getuid() != 0 and self._is_rootless()
        uid, gid = container_user(self.user, rootless=rootless)
        # Who owns the writable folders on the host: the submitter for a rootless
        # engine's root; any other uid there is a subordinate one we cannot chown to.
        owner = (os.getuid(), os.getgid()) if rootless and (uid, gid) == (0, 0) else (uid, gid)
        prepare_run_dir(run_dir, *owner, sorted(channels))
        job = env.get("TRAINFORGE_JOB_NAME") or run_dir.parent.name
        attempt = env.get("TRAINFORGE_ATTEMPT", "1")
        volumes = {**self.volumes, str(run_dir): {"bind": CONTAINER_ROOT, "mode": "rw"}}
        mounts = [docker.types.Mount(f"{CONTAINER_ROOT}/input/data/{channel}", folder, type="bind",
                                     read_only=True) for channel, folder in sorted(channels.items())]
        env = dict(env)
        notes: list[str] = []
        device_requests = None
        if gpus > 0:
            problem = _podman_gpus(gpus) if self._is_podman() else None
            if problem is None:
                device_requests = [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
            else:
                env, notes = self._without_gpus(env, problem)
        name = container_name(run_dir, job, attempt)
        settings: dict[str, Any] = {
            "image": image, "command": ["train"], "name": name, "environment": env,
            "volumes": volumes, "mounts": mounts, "network_mode": "host", "shm_size": self.shm_size,
            "init": self.init, "detach": True, "user": f"{uid}:{gid}",
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "labels": {LABEL_JOB: job, LABEL_ATTEMPT: attempt, LABEL_MANAGED_BY: MANAGED_BY},
        }
        try:
            container, output = self._start(settings, device_requests)
        except docker.errors.APIError as exc:
            if device_requests and _gpu_refusal(exc):
                env, notes = self._without_gpus(env, f"the container engine at {self.engine_address} "
                                                     f"cannot give containers GPUs ({exc.explanation})")
                settings["environment"] = env
                container, output = self._start(settings, None)
            elif exc.status_code == 404 or isinstance(exc, docker.errors.ImageNotFound):
                raise ImageNotFound(f"image {image!r} is not present on the container engine at "
                                    f"{self.engine_address}: {exc.explanation}") from exc
            else:
                raise BackendError(f"could not start image {image!r} for job {job}: {exc.explanation or exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailable(f"lost the container engine at {self.engine_address}: {exc}") from exc
        return _Container(container, notes, self.engine_address, output)

    # -- helpers ------------------------------------------------------------------
    def _start(self, settings: dict[str, Any], device_requests: list[Any] | None) -> tuple[Any, Any]:
        """Create, attach, start: the container and its output socket (None when
        the engine refused the attach: the logs are read instead). Each step is
        one API call, since the start-up is mostly the engine's round trips:
        no inspect after create, a stale container of the same name looked for
        only when the name is taken, and the output attached before the start,
        which also saves Podman's log follower (it polls its log file every
        250 ms; an attach gets conmon's stream as ``podman run`` does)."""
        extra = {"device_requests": device_requests} if device_requests else {}
        container = self._create({**settings, **extra})
        try:
            output = self._attach(container.id)
            try:
                container.start()
            except BaseException:
                if output is not None:
                    output.close()
                raise
        except BaseException:
            container.remove(force=True)
            raise
        return container, output

    def _create(self, settings: dict[str, Any]) -> Any:
        """``containers.create`` without its inspect of the new container; a
        container of the same name (a stale attempt) is removed and the create
        repeated."""
        convert = getattr(docker.models.containers, "_create_container_args", None)
        if convert is None:  # a docker SDK without the helper: the public way, one inspect more
            return self._create_public(settings)
        settings = {k: v for k, v in settings.items() if k != "detach"}
        arguments = convert({**settings, "version": self.client.api._version})
        try:
            created = self.client.api.create_container(**arguments)
        except docker.errors.APIError as exc:
            if not _name_taken(exc):
                raise
            self._remove_stale(settings["name"])
            created = self.client.api.create_container(**arguments)
        return self.client.containers.prepare_model({"Id": created["Id"], "Name": "/" + settings["name"]})

    def _create_public(self, settings: dict[str, Any]) -> Any:
        try:
            return self.client.containers.create(**settings)
        except docker.errors.APIError as exc:
            if not _name_taken(exc):
                raise
            self._remove_stale(settings["name"])
            return self.client.containers.create(**settings)

    def _attach(self, container_id: str) -> Any:
        """The container's stdout and stderr from its start, or None if the
        engine refuses (the caller reads the logs then)."""
        try:
            sock = self.client.api.attach_socket(container_id, params={"stdout": 1, "stderr": 1, "stream": 1})
        except docker.errors.APIError:
            return None
        for each in (sock, getattr(sock, "_sock", None)):  # the client's timeout would end a quiet trainer's stream
            if each is not None and hasattr(each, "settimeout"):
                each.settimeout(None)
        return sock

    def _remove_stale(self, name: str) -> None:

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _without_gpus(self, env: dict[str, str], problem: str) -> tuple[dict[str, str], list[str]]:
        if self.on_missing_gpus != "cpu":
            raise BackendError(
                f"{problem}. Use Docker with the NVIDIA Container Toolkit for GPU instance types, "
                "pick a CPU instance type (local, cpu-small, cpu-large), or set the container "
                "backend option on_missing_gpus='cpu' to run GPU jobs on the CPU")
        note = f"trainforge: warning: {problem}; running on the CPU (on_missing_gpus='cpu')"
        return {**env, "SM_NUM_GPUS": "0"}, [note]


def _podman_gpus(gpus: int) -> str:
    return f"the job asks for {gpus} GPU(s), but Podman's Docker API does not pass GPUs to containers"


def _name_taken(exc: Any) -> bool:
    """Docker answers a taken name with 409, Podman 4 with a 500 saying so."""
    return exc.status_code == 409 or "already in use" in str(getattr(exc, "explanation", "") or "")


def _gpu_refusal(exc: Any) -> bool:
    text = str(getattr(exc, "explanation", "") or exc).lower()
    return "device driver" in text or "nvidia" in text or "gpu" in text
