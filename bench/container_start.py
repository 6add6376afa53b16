"""Container job start overhead; prints numbers, asserts nothing.

Submit -> first trainer line for the same one-line trainer
(bench/trainers/first-line) run four ways:

1. container backend: ``submit_job(image, backend="container")`` (detached
   supervisor, config files, /opt/ml mount, create + start through the
   Docker API, log streaming);
2. process backend: ``submit_job(source_dir, backend="process")``;
3. bare Docker API: create + start + first log line with the docker SDK,
   and create + attach + start (the engine's own floor through the same API,
   the second the way the backend does it);
4. bare CLI: ``podman run --rm`` of the same image with the same flags
   (host network, --init, shm size), when this script started the engine.

The ways are interleaved (each round runs every way once, the order rotated
from round to round); each round's times and its ratio to ``podman run`` are
printed, then the medians.

The image is containers/base/Dockerfile (runtime only, no PyTorch: start-up,
not imports, is measured) plus the trainer. The engine is ``DOCKER_HOST`` if
set, else a private Podman started with the test bed's tooling
(tests/infra/podman_engine.py: needs podman, runc and the cached base image
from tests/infra/prepare-engine.sh).

    .venv/bin/python bench/container_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRAINER = REPO / "bench" / "trainers" / "first-line"
BASE_TAG = "localhost/trainforge-bench/base:1"
IMAGE_TAG = "localhost/trainforge-bench/first-line:1"
TRAINER_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY trainer /opt/program/trainer
"""

sys.path.insert(0, str(REPO))  # tests.infra, for a private Podman


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.0f} ms  (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})"


def first_line_submitted(image: str, backend: Any) -> float:
    from trainforge import submit_job

    started = time.perf_counter()
    job = submit_job(image, backend=backend)
    elapsed = None
    for _ in job.logs(follow=True):
        elapsed = time.perf_counter() - started
        break
    job.wait(timeout=120)
    assert elapsed is not None, "the trainer printed nothing"
    return elapsed


def first_line_api(client: Any, shm_size: int) -> float:
    started = time.perf_counter()
    container = client.containers.run(IMAGE_TAG, ["train"], detach=True, network_mode="host", init=True,
                                      shm_size=shm_size)
    try:
        for _ in container.logs(stream=True, follow=True):
            elapsed = time.perf_counter() - started
            break
        container.wait()
    finally:
        container.remove(force=True)
    return elapsed


def first_line_attach(client: Any, shm_size: int) -> float:
    """create + attach + start, the order ``docker run`` uses (and the backend)."""
    from docker.utils.socket import frames_iter

    api = client.api
    started = time.perf_counter()
    host = api.create_host_config(network_mode="host", init=True, shm_size=shm_size)
    created = api.create_container(IMAGE_TAG, ["train"], host_config=host)["Id"]
    try:
        sock = api.attach_socket(created, params={"stdout": 1, "stderr": 1, "stream": 1})
        api.start(created)
        next(frames_iter(sock, False))
        elapsed = time.perf_counter() - started
        sock.close()
        api.wait(created)
    finally:
        api.remove_container(created, force=True)
    return elapsed


def first_line_cli(env: dict[str, str], shm_size: int) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(["podman", "run", "--rm", "--network", "host", "--init", f"--shm-size={shm_size}",
                             IMAGE_TAG, "train"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def build_images(client: Any, base_image: str) -> None:
    from trainforge.images import build

    started = time.perf_counter()
    build(REPO, BASE_TAG, dockerfile="containers/base/Dockerfile", client=client, output=None,
          build_args={"BASE_IMAGE": base_image, "TORCH_PACKAGES": "", "VARIANT": "bench"})
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(TRAINER_DOCKERFILE)
        shutil.copytree(TRAINER / "trainer", context / "trainer")
        build(context, IMAGE_TAG, client=client, output=None, build_args={"BASE_IMAGE": BASE_TAG})
    print(f"images built in {time.perf_counter() - started:.1f} s (cached layers are reused)")


def run(repeats: int) -> None:
    from trainforge.backends import get_backend
    from trainforge.backends.local.container import default_shm_size
    from trainforge.images import connect

    engine = None
    folder = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    if not os.environ.get("DOCKER_HOST"):
        from tests.infra.podman_engine import start_podman

        engine = start_podman(folder / "podman", folder / "logs")
        os.environ["DOCKER_HOST"] = engine.docker_host
    os.environ["TRAINFORGE_HOME"] = str(folder / "home")
    client = connect()
    try:
        version = client.version()
        name = next((c["Name"] for c in version.get("Components", []) if "Engine" in c.get("Name", "")), "engine")
        print(f"engine: {name} {version.get('Version')} at {os.environ['DOCKER_HOST']}; "
              f"{os.cpu_count()} CPUs; {repeats} runs each, after one warm-up")
        base_image = engine.base_image if engine else os.environ.get("BENCH_BASE_IMAGE", "python:3.12-slim")
        build_images(client, base_image)
        shm = default_shm_size()
        ways: list[tuple[str, Callable[[], float]]] = [
            ("container backend (submit_job)", lambda: first_line_submitted(IMAGE_TAG, get_backend("container"))),
            ("process backend (submit_job)", lambda: first_line_submitted(str(TRAINER), get_backend("process"))),
            ("bare Docker API (create+start+logs)", lambda: first_line_api(client, shm)),
            ("bare Docker API (create+attach+start)", lambda: first_line_attach(client, shm)),
        ]
        if engine is not None:
            ways.append(("bare `podman run --rm`", lambda: first_line_cli(engine.env, shm)))
        for _, measure in ways:
            measure()  # warm-up: page cache, engine caches
        # Interleaved: every round runs each way once, in a rotated order, so a
        # load change on this shared machine hits all ways alike.
        results: dict[str, list[float]] = {label: [] for label, _ in ways}
        container_label, cli_label = "container backend (submit_job)", "bare `podman run --rm`"
        print(f"load average {os.getloadavg()[0]:.1f} at the start")
        for round_ in range(repeats):
            order = ways[round_ % len(ways):] + ways[:round_ % len(ways)]
            for label, measure in order:
                results[label].append(measure())
            line = "  ".join(f"{label.replace(' (submit_job)', '')} {results[label][-1] * 1000:.0f} ms" for label, _ in ways)
            ratio = (f"  -> {results[container_label][-1] / results[cli_label][-1]:.2f}x podman run"
                     if cli_label in results else "")
            print(f"round {round_ + 1}: {line}{ratio}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        print("\nsubmit -> first trainer line (median)")
        for label, samples in results.items():
            print(f"  {label:<38} {median_ms(samples)}")
        container = statistics.median(results[container_label])
        process = statistics.median(results["process backend (submit_job)"])
        api = statistics.median(results["bare Docker API (create+attach+start)"])
        print(f"\ncontainer backend - process backend = {(container - process) * 1000:.0f} ms "
              "(what the container adds on top of the supervisor)")
        print(f"container backend - bare Docker API (attach) = {(container - api) * 1000:.0f} ms "
              "(supervisor start-up, config files, /opt/ml preparation)")
        if engine is not None:
            cli = statistics.median(results[cli_label])
            ratios = sorted(c / b for c, b in zip(results[container_label], results[cli_label], strict=True))
            print(f"container backend / bare podman run = {container / cli:.2f}x (medians); per round "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}")
    finally:
        client.close()
        if engine is not None:
            engine.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    run(parser.parse_args().repeats)


if __name__ == "__main__":
    main()
