"""TensorBoard on the cluster: the pod the controller builds gives the trainer
``$TRAINFORGE_TENSORBOARD_DIR`` in the folder the stager sidecar syncs (the
sync itself: tests/integration/test_stage.py), and ``trainforge tensorboard
--backend kubernetes`` fetches what the sidecar uploaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from trainforge.cli import main

from tests.controller.test_reconcile import Harness, harness  # noqa: F401 - fixture


def test_the_pod_shares_the_tensorboard_folder_and_the_cli_fetches_the_synced_logs(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    h = harness
    out = h.bucket.uri("models/")
    # What the sidecar of host 0 uploads while the trainer writes TensorBoard logs.
    h.put(f"{out}{h.ns}/tb-k8s/tensorboard/run1/events.out.tfevents.1", b"epoch 1, epoch 2")
    h.submit("tb-k8s", instance={"type": "cpu-small", "count": 1}, output={"uri": out})
    h.submit("tb-none", instance={"type": "cpu-small", "count": 1}, output={"uri": out})
    h.wait_phase("tb-k8s", "Completed")

    pod = h.job("tb-k8s-a1").spec.template.spec
    trainer = pod.containers[0]
    sidecar = next(c for c in pod.init_containers if c.command[-1] == "sync")
    env = {e.name: e.value for e in trainer.env}
    assert env["TRAINFORGE_TENSORBOARD_DIR"] == "/opt/ml/output/tensorboard"
    mounts = {c.name: {m.name: m.mount_path for m in c.volume_mounts} for c in (trainer, sidecar)}
    assert mounts[trainer.name]["opt-ml"] == mounts[sidecar.name]["opt-ml"] == "/opt/ml"
    assert sidecar.restart_policy == "Always"  # runs beside the trainer, syncing every interval

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(h.kube.kubeconfig).read_text())
    h.kube.kubectl("config", "set-context", "--current", f"--namespace={h.ns}", f"--kubeconfig={kubeconfig}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    for key, value in h.bucket.env().items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["tensorboard", "--backend", "kubernetes", "--download", str(tmp_path / "tb"),
                                       "tb-k8s", "tb-none"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tb" / "tb-k8s" / "run1" / "events.out.tfevents.1").read_bytes() == b"epoch 1, epoch 2"
    assert "tb-none: no TensorBoard logs" in result.output
    missing = CliRunner().invoke(main, ["tensorboard", "--backend", "kubernetes", "--download", str(tmp_path / "x"),
                                        "no-such-job"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
