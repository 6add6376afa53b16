"""TrainingJobs on the test bed's real kubelet node; prints numbers, asserts nothing.

Runs under pytest for the test bed's fixtures (control plane, real node, MinIO,
Podman, the stager and example images), as root:

    .venv/bin/python bench/real_pods.py [--mib 256]

1. submit -> the trainer's first log line (read through apiserver -> kubelet),
   and submit -> Completed, for the digits example (3 epochs);
2. the pod's overhead against the trainer's own run time, from the kubelet's
   container timestamps (1 s resolution): pod created -> trainer started
   (scheduling, sandbox, stage-in, sidecar start) and trainer finished -> pod
   done (the sidecar's stage-out);
3. stage-in throughput of ``--mib`` MiB (8 files) through the stager's init
   container, against ``mc cp --recursive`` of the same objects on the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "sdk"), str(REPO / "controller")]

from tests.controller.conftest import trainforge_crd  # noqa: E402,F401 - fixture
from tests.controller.test_real_pods import node_images, real, upload_digits  # noqa: E402,F401 - fixtures
from tests.controller.test_reconcile import Harness  # noqa: E402
from tests.infra.waiting import wait_until  # noqa: E402
from tests.integration.conftest import example_images, trainforge_base_image  # noqa: E402,F401
from tests.integration.test_stager_image import stager_image  # noqa: E402,F401
from trainforge.backends.kubernetes import KubernetesBackend  # noqa: E402

MIB = int(os.environ.get("BENCH_STAGE_MIB", "256"))


def seconds(a: Any, b: Any) -> float:
    return (b - a).total_seconds()


def container(pod: Any, name: str) -> Any:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    return next(s for s in statuses if s.name == name).state.terminated


def test_real_pod_numbers(real: Harness, node_images: dict[str, str], tmp_path: Path,  # noqa: F811
                          mc_binary: Path, minio: Any) -> None:
    h = real
    backend = KubernetesBackend(h.store_settings, namespace=h.ns, kubeconfig=str(h.kube.kubeconfig),
                                output=h.bucket.uri("jobs/"))
    inputs = upload_digits(h, tmp_path)
    submitted = time.monotonic()
    h.submit("digits", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "3"}, inputs=[{"channel": c, "uri": u} for c, u in inputs.items()])
    wait_until(lambda: any(line.startswith("training on") for line in backend.logs("digits")),
               timeout=300, what="the first trainer line")
    first_line = time.monotonic() - submitted
    h.wait_phase("digits", "Completed", timeout=300)
    completed = time.monotonic() - submitted
    [pod] = h.pods("digits-a1")
    trainer, stage_in = container(pod, "trainer"), container(pod, "stage-in")
    sidecar = container(pod, "stager")
    before = seconds(pod.metadata.creation_timestamp, trainer.started_at)
    run = seconds(trainer.started_at, trainer.finished_at)
    after = seconds(trainer.finished_at, sidecar.finished_at) if sidecar else float("nan")
    print(f"\ndigits, 3 epochs: submit -> first trainer line {first_line:.1f} s, submit -> Completed {completed:.1f} s")
    print(f"pod overhead: created -> trainer started {before:.0f} s (stage-in container "
          f"{seconds(stage_in.started_at, stage_in.finished_at):.0f} s), trainer run {run:.0f} s, "
          f"trainer finished -> sidecar done {after:.0f} s; overhead {before + after:.0f} s vs trainer {run:.0f} s")

    # stage-in throughput: the init container vs mc cp of the same objects
    s3 = h.bucket.s3_client()
    for i in range(8):
        s3.put_object(Bucket=h.bucket.name, Key=f"big/part-{i}.bin", Body=os.urandom(MIB * 1024 * 1024 // 8))
    h.submit("stagein", image=node_images["stager"], instance={"type": "real-cpu"},
             inputs=[{"channel": "train", "uri": h.bucket.uri("big/")}])
    h.wait_phase("stagein", "Completed", timeout=600)
    [pod] = h.pods("stagein-a1")
    staged = container(pod, "stage-in")
    init_seconds = max(1.0, seconds(staged.started_at, staged.finished_at))
    # the stager's own account, from inside the pod: its start-up, the bytes, their rate
    own = h.core.read_namespaced_pod_log(pod.metadata.name, h.ns, container="stage-in").strip().splitlines()
    print(f"stage-in container says: {own[-1] if own else '(nothing)'}")
    target = tmp_path / "mc-copy"
    env = {**os.environ, **minio.mc_env("bench")}
    started = time.monotonic()
    subprocess.run([str(mc_binary), "cp", "--recursive", "--quiet", f"bench/{h.bucket.name}/big/", f"{target}/"],
                   env=env, check=True, capture_output=True)
    mc_seconds = time.monotonic() - started
    print(f"stage-in of {MIB} MiB (8 objects): init container {init_seconds:.0f} s "
          f"({MIB / init_seconds:.0f} MiB/s, incl. its Python start), mc cp {mc_seconds:.1f} s "
          f"({MIB / mc_seconds:.0f} MiB/s); ratio init/mc {init_seconds / mc_seconds:.1f}x")


if __name__ == "__main__":
    if "--mib" in sys.argv:
        os.environ["BENCH_STAGE_MIB"] = sys.argv[sys.argv.index("--mib") + 1]
    sys.exit(pytest.main([__file__, "-p", "tests.conftest", "-q", "-s", "-p", "no:cacheprovider",
                          "--rootdir", str(REPO)]))
