"""Images for the container tests, built once per session on the test bed's
Podman (fixture ``container_engine``) from the real Dockerfiles.

No registry or package index is reachable from inside a build here, so the
trainforge base image (containers/base/Dockerfile) is built on the test bed's
Debian Python image with ``TORCH_PACKAGES=""``: Python, the trainforge runtime,
the non-root user and the entrypoint, but no PyTorch. Trainers that need
PyTorch get it at run time from this test run's own virtual environment,
bind-mounted read-only into the container (``torch_runtime``): the same
CPython minor version, so its compiled wheels load unchanged. That costs
nothing per run, where installing PyTorch into an image would copy gigabytes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "containers" / "examples"
TORCH_MOUNT = "/opt/host-site-packages"


def build_image(client: Any, context: Path, tag: str, dockerfile: str | None = None,
                buildargs: dict[str, str] | None = None) -> str:
    from trainforge.images import build

    build(context, tag, dockerfile=dockerfile, build_args=buildargs or {}, client=client,
          output=lambda line: None)
    return tag


@dataclass(frozen=True)
class BaseImage:
    tag: str
    python: tuple[int, int]   # the image's CPython (major, minor)


@pytest.fixture(scope="session")
def trainforge_base_image(container_engine: Any) -> Iterator[BaseImage]:
    """containers/base/Dockerfile on the test bed's Debian Python, without PyTorch."""
    client = container_engine.docker_client()
    try:
        tag = build_image(client, REPO, "localhost/trainforge-test/pytorch-base:session",
                          dockerfile="containers/base/Dockerfile",
                          buildargs={"BASE_IMAGE": container_engine.base_image, "TORCH_PACKAGES": "",
                                     "VARIANT": "test"})
        output = client.containers.run(tag, remove=True, entrypoint=["python", "-c",
                                       "import sys; print(*sys.version_info[:2])"])
        major, minor = (int(p) for p in output.split())
        yield BaseImage(tag, (major, minor))
    finally:
        client.close()


@dataclass(frozen=True)
class TorchRuntime:
    """How a container borrows this run's PyTorch: a volume and PYTHONPATH."""

    volume: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def torch_runtime(trainforge_base_image: BaseImage, tmp_path_factory: pytest.TempPathFactory) -> TorchRuntime:
    import torch

    site_packages = Path(torch.__file__).resolve().parents[1]
    if trainforge_base_image.python != sys.version_info[:2]:
        pytest.skip(f"the base image's Python {trainforge_base_image.python} differs from this run's "
                    f"{sys.version_info[:2]}, whose PyTorch the container would borrow")
    # On sys.path through a .pth file in the image's venv (spec.env may not set PYTHONPATH).
    pth = tmp_path_factory.mktemp("torch-pth") / "host-site-packages.pth"
    pth.write_text(TORCH_MOUNT + "\n")
    pth.chmod(0o644)
    major, minor = trainforge_base_image.python
    venv_site = f"/opt/venv/lib/python{major}.{minor}/site-packages"
    return TorchRuntime(f"{site_packages}:{TORCH_MOUNT}:ro,{pth}:{venv_site}/host-site-packages.pth:ro", {})


@pytest.fixture(scope="session")
def example_images(container_engine: Any, trainforge_base_image: BaseImage) -> dict[str, str]:
    """The examples' own Dockerfiles on the base image: name -> tag."""
    client = container_engine.docker_client()
    try:
        return {name: build_image(client, EXAMPLES / name, f"localhost/trainforge-test/{name}:session",
                                  buildargs={"BASE_IMAGE": trainforge_base_image.tag})
                for name in ("digits-pytorch", "sagemaker-compat")}
    finally:
        client.close()
