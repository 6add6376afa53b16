"""Where each server binary comes from.

Order: an explicit per-binary environment variable, then ``KUBEBUILDER_ASSETS``
(the envtest convention), then the cache filled by ``build-servers.sh``. Never
``PATH``: a stray system binary of another version makes failures that depend
on the machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parent
VERSIONS_FILE = INFRA_DIR / "versions.env"


class ComponentUnavailable(Exception):
    """A server binary (or the base image) is missing; ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Binary:
    name: str  # file name, e.g. "kube-apiserver"
    component: str  # build-servers.sh component that produces it
    env_vars: tuple[str, ...]  # overrides, first set wins


BINARIES: dict[str, Binary] = {
    b.name: b
    for b in [
        Binary("minio", "minio", ("MINIO_BINARY", "TEST_ASSET_MINIO")),
        Binary("mc", "mc", ("MC_BINARY", "TEST_ASSET_MC")),
        Binary("etcd", "etcd", ("TEST_ASSET_ETCD",)),
        Binary("kube-apiserver", "kubernetes", ("TEST_ASSET_KUBE_APISERVER",)),
        Binary("kube-controller-manager", "kubernetes", ("TEST_ASSET_KUBE_CONTROLLER_MANAGER",)),
        Binary("kube-scheduler", "kubernetes", ("TEST_ASSET_KUBE_SCHEDULER",)),
        Binary("kubectl", "kubernetes", ("TEST_ASSET_KUBECTL",)),
        Binary("kubelet", "kubelet", ("TEST_ASSET_KUBELET",)),
        Binary("pause", "pause", ("TEST_ASSET_PAUSE",)),
        Binary("kwok", "kwok", ("TEST_ASSET_KWOK",)),
        Binary("helm", "helm", ("TEST_ASSET_HELM",)),
        # Its crds/ and webhooks.yaml are read from beside the binary.
        Binary("kueue", "kueue", ("TEST_ASSET_KUEUE",)),
    ]
}


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a shell env file; comments and blanks ignored."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def versions() -> dict[str, str]:
    return parse_env_file(VERSIONS_FILE.read_text())


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """Same folder as the shell scripts use: ``$TRAINFORGE_CACHE`` or ~/.cache/trainforge."""
    env = os.environ if env is None else env
    return Path(env.get("TRAINFORGE_CACHE") or Path.home() / ".cache" / "trainforge")


# Components pinned by another component's version (built from the same module).
_VERSION_OF = {"kubelet": "KUBERNETES_VERSION"}


def component_dir(component: str, env: Mapping[str, str] | None = None) -> Path:
    version = versions()[_VERSION_OF.get(component, f"{component.upper()}_VERSION")]
    return cache_root(env) / "servers-v1" / f"{component}-{version}"


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def locate(name: str, env: Mapping[str, str] | None = None) -> Path:
    """The executable for binary ``name``, or ComponentUnavailable saying why not."""
    env = os.environ if env is None else env
    binary = BINARIES[name]
    for var in binary.env_vars:
        if env.get(var):
            path = Path(env[var])
            if not _is_executable(path):
                raise ComponentUnavailable(name, f"${var}={path} is not an executable file")
            return path
    if env.get("KUBEBUILDER_ASSETS"):
        path = Path(env["KUBEBUILDER_ASSETS"]) / name
        if _is_executable(path):
            return path
    folder = component_dir(binary.component, env)
    path = folder / name
    if (folder / ".ok").exists() and _is_executable(path):
        return path
    raise ComponentUnavailable(name, _why_missing(binary, folder))


def _why_missing(binary: Binary, folder: Path) -> str:
    hint = f"run tests/infra/build-servers.sh {binary.component}"
    overrides = " or ".join(f"${v}" for v in binary.env_vars)
    tail = log_tail(folder / "build.log")
    if tail:
        return (
            f"the build of component {binary.component!r} failed ({folder / 'build.log'}); "
            f"last lines:\n{tail}\n({hint}, or set {overrides})"
        )
    return f"not built in {folder} ({hint}, or set {overrides})"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
