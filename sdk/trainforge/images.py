"""Building and pushing trainer images (``trainforge build DIR -t TAG [--push]``)
with the docker SDK, so Docker and Podman's Docker API (``DOCKER_HOST``) both
work.

The build output is streamed line by line to ``output`` as it happens. Errors
are the package's own, each saying what to do: ``ImageBuildError`` for a
missing context or Dockerfile and for a failed step (its message ends with the
last lines of the build log, ``.log`` has all of it), ``RegistryAuthError``
when a registry refuses the credentials of a push, ``RegistryError`` for any
other push failure, ``EngineUnavailable`` when no engine answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped]
import docker.constants  # type: ignore[import-untyped]
import docker.errors  # type: ignore[import-untyped]
import docker.utils  # type: ignore[import-untyped]
import requests

from .errors import EngineUnavailable, ImageBuildError, RegistryAuthError, RegistryError

__all__ = ["BuiltImage", "build", "connect", "push"]

CLIENT_TIMEOUT = 120   # seconds for one API call; builds and pushes stream without a limit
LOG_TAIL_LINES = 30
_AUTH_WORDS = ("unauthorized", "authentication required", "denied", "forbidden", "403", "401",
               "no basic auth credentials", "incorrect username or password")
_STEP = re.compile(r"^\s*(STEP \d+/\d+:|Step \d+/\d+ :)")

Output = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class BuiltImage:
    """What ``build`` made: the image id and the tag, and the pushed digest."""

    id: str
    tag: str | None
    digest: str | None = None


def connect(docker_host: str | None = None, timeout: int = CLIENT_TIMEOUT) -> Any:
    """A ``docker.DockerClient`` for ``docker_host`` (default: ``DOCKER_HOST``
    and the other ``DOCKER_*`` variables, then the platform's default socket).

    The API version comes from the engine's ``/_ping`` answer rather than
    ``/version``, which Podman answers by running its helper binaries (~0.5 s
    on every connect)."""
    address = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        settings = {"base_url": docker_host} if docker_host else docker.utils.kwargs_from_env()
        probe = docker.APIClient(version=docker.constants.DEFAULT_DOCKER_API_VERSION, timeout=timeout, **settings)
        try:
            response = probe.get(probe.base_url + "/_ping", timeout=timeout)
            response.raise_for_status()
            server = response.headers.get("API-Version")
        finally:
            probe.close()
        version = "auto"
        if server:
            version = server if docker.utils.version_lt(server, docker.constants.DEFAULT_DOCKER_API_VERSION) \
                else docker.constants.DEFAULT_DOCKER_API_VERSION
        return docker.DockerClient(version=version, timeout=timeout, **settings)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(
            f"cannot reach the container engine at {address}: {exc}. Start Docker, or serve "
            "Podman's Docker API (podman system service unix:///PATH/podman.sock) and set "
            "DOCKER_HOST=unix:///PATH/podman.sock"
        ) from exc


def _dockerfile(context: Path, dockerfile: str | os.PathLike[str] | None) -> str:
    """The Dockerfile as docker-py wants it: relative to the context when inside it."""
    if not context.is_dir():
        raise ImageBuildError(f"build context {context} is not a directory")
    path = Path(dockerfile) if dockerfile is not None else Path("Dockerfile")
    full = path if path.is_absolute() else context / path
    if not full.is_file():
        hint = "" if dockerfile is not None else " (pass the Dockerfile's path, or run trainforge init to make a project)"
        raise ImageBuildError(f"no Dockerfile at {full}{hint}")
    try:
        return str(full.resolve().relative_to(context.resolve()))
    except ValueError:
        return str(full.resolve())   # outside the context: docker-py sends it along


def _lines(chunks: Iterable[dict[str, Any]], output: Output, log: list[str]) -> Iterable[dict[str, Any]]:
    """Split the engine's stream records into lines for ``output``; yield the others."""
    pending = ""
    for chunk in chunks:
        text = chunk.get("stream")
        if text is None:
            yield chunk
            continue
        pending += text
        *complete, pending = pending.split("\n")
        for line in complete:
            log.append(line)
            output(line)
    if pending:
        log.append(pending)
        output(pending)


def _failed_step(log: list[str]) -> str | None:
    steps = [line.strip() for line in log if _STEP.match(line)]
    return steps[-1] if steps else None


def build(
    path: str | os.PathLike[str] = ".",
    tag: str | None = None,
    *,
    dockerfile: str | os.PathLike[str] | None = None,
    build_args: Mapping[str, str] | None = None,
    push: bool = False,
    pull: bool = False,
    no_cache: bool = False,
    platform: str | None = None,
    docker_host: str | None = None,
    client: Any = None,
    output: Output | None = _print,
) -> BuiltImage:
    """Build the image in directory ``path`` (its ``Dockerfile``, or
    ``dockerfile`` relative to it) as ``tag``; with ``push``, push it too.

    ``output`` receives every line of the build (and push) output as it
    comes; None keeps quiet. ``client`` reuses a docker SDK client, else one is
    made for ``docker_host`` / ``DOCKER_HOST``.
    """
    context = Path(path).expanduser()
    relative = _dockerfile(context, dockerfile)
    if push and not tag:
        raise ImageBuildError("push needs a tag (-t REGISTRY/NAME:TAG)")
    emit: Output = output or (lambda line: None)
    own = client is None
    client = connect(docker_host) if own else client
    log: list[str] = []
    try:
        try:
            stream = client.api.build(
                path=str(context), dockerfile=relative, tag=tag, buildargs=dict(build_args or {}),
                rm=True, forcerm=True, pull=pull, nocache=no_cache, platform=platform, decode=True,
            )
            image_id = None
            for record in _lines(stream, emit, log):
                if "error" in record or "errorDetail" in record:
                    message = (record.get("errorDetail") or {}).get("message") or record.get("error") or ""
                    log.append(str(message))
                    emit(str(message))
                    step = _failed_step(log)
                    tail = "\n".join(f"    {line}" for line in log[-LOG_TAIL_LINES:])
                    raise ImageBuildError(
                        f"build of {tag or context} failed" + (f" at {step}" if step else "")
                        + f": {str(message).strip()}\n  last lines of the build log:\n{tail}",
                        log="\n".join(log))
                aux = record.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"build of {tag or context} failed: {exc.explanation or exc}",
                                  log="\n".join(log)) from exc
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailable(f"lost the container engine during the build of {tag or context}: {exc}") from exc
        if image_id is None:
            found = re.findall(r"Successfully built ([0-9a-f]+)", "\n".join(log))
            image_id = found[-1] if found else (client.images.get(tag).id if tag else None)
        if image_id is None:
            raise ImageBuildError(f"build of {context} reported no image id", log="\n".join(log))
        digest = _push(client, tag, emit) if push and tag else None
        return BuiltImage(id=image_id, tag=tag, digest=digest)
    finally:
        if own:
            client.close()


def push(tag: str, *, docker_host: str | None = None, client: Any = None,
         output: Output | None = _print) -> str | None:
    """Push ``tag`` to its registry; the pushed digest when the engine reports one."""
    own = client is None
    client = connect(docker_host) if own else client
    try:
        return _push(client, tag, output or (lambda line: None))
    finally:
        if own:
            client.close()


def _registry(tag: str) -> str:
    first = tag.split("/", 1)[0]
    return first if "/" in tag and ("." in first or ":" in first or first == "localhost") else "docker.io"


def _push(client: Any, tag: str, emit: Output) -> str | None:
    registry = _registry(tag)
    repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    digest = None
    try:
        for record in client.api.push(repository, tag=version, stream=True, decode=True):
            if "error" in record or "errorDetail" in record:
                message = str((record.get("errorDetail") or {}).get("message") or record.get("error"))
                raise _push_error(tag, registry, message)
            status = record.get("status")
            if status:
                emit(f"{record['id']}: {status}" if record.get("id") else str(status))
            aux = record.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            found = re.search(r"digest: (sha256:[0-9a-f]{64})", str(status or ""))
            if found:
                digest = found.group(1)
    except docker.errors.APIError as exc:
        raise _push_error(tag, registry, str(exc.explanation or exc)) from exc
    except requests.exceptions.RequestException as exc:
        raise EngineUnavailable(f"lost the container engine while pushing {tag}: {exc}") from exc
    return digest


def _push_error(tag: str, registry: str, message: str) -> RegistryError:
    if any(word in message.lower() for word in _AUTH_WORDS):
        return RegistryAuthError(
            f"push of {tag} refused by {registry}: {message.strip()} (log in first: "
            f"docker login {registry}, or podman login {registry})")
    return RegistryError(f"push of {tag} to {registry} failed: {message.strip()}")


def inspect_digest(image: str, *, docker_host: str | None = None, client: Any = None) -> dict[str, str | None]:
    """What the engine knows of ``image`` now: ``id`` (the local image ID, a digest
    of its config) and ``digest`` (``repo@sha256:...`` once pulled from or pushed to
    a registry), each None with ``reason`` when it cannot tell."""
    own = client is None
    try:
        client = connect(docker_host) if own else client
    except EngineUnavailable as exc:
        return {"id": None, "digest": None, "reason": f"the container engine is unreachable: {exc}"}
    try:
        attrs = client.images.get(image).attrs
    except docker.errors.ImageNotFound:
        return {"id": None, "digest": None, "reason": f"image {image!r} is no longer on the container engine"}
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        return {"id": None, "digest": None, "reason": f"cannot inspect image {image!r}: {exc}"}
    finally:
        if own and client is not None:
            client.close()
    repo_digests = [str(d) for d in attrs.get("RepoDigests") or []]
    return {"id": str(attrs.get("Id") or "") or None, "digest": repo_digests[0] if repo_digests else None,
            "reason": None if repo_digests else "never pushed to or pulled from a registry: only the local image ID"}
