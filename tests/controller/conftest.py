"""Controller tests: ``controller/`` on the path (until pyproject lists it),
and the committed CRD installed once on the session's cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "controller") not in sys.path:
    sys.path.insert(0, str(ROOT / "controller"))

CRD_FILE = ROOT / "k8s" / "crds" / "trainforge.dev_trainingjobs.yaml"
TUNING_CRD_FILE = ROOT / "k8s" / "crds" / "trainforge.dev_tuningjobs.yaml"
POLICY_CRD_FILE = ROOT / "k8s" / "crds" / "trainforge.dev_retrainingpolicies.yaml"


@pytest.fixture(scope="session")
def trainforge_crd(kube: Any) -> Path:
    """The committed CRDs (TrainingJob, TuningJob, RetrainingPolicy), applied
    and Established: the controller serves every kind."""
    for path in (CRD_FILE, TUNING_CRD_FILE, POLICY_CRD_FILE):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/trainingjobs.trainforge.dev", "crd/tuningjobs.trainforge.dev",
                 "crd/retrainingpolicies.trainforge.dev")
    return CRD_FILE


@pytest.fixture(scope="module")
def kueue(kube: Any, test_bed_dir: Path) -> Iterator[Any]:
    """Kueue's manager against the session's cluster (tests/infra/kueue_server.py):
    its CRDs, its webhooks by URL, batch/v1 Jobs. Fails, never skips, when it
    cannot start: a missing build is an error of the test bed, not a reason.

    Per module, not per session: while Kueue runs it owns every Job with a
    queue label (it suspends one its queue has not admitted), and other
    modules' tests play Kueue's part by hand (test_reconcile resumes a queued
    Job itself). Its webhooks go with it."""
    from tests.infra.binaries import ComponentUnavailable
    from tests.infra.kueue_server import start_kueue

    try:
        server = start_kueue(kube, test_bed_dir / "run" / "kueue", test_bed_dir / "logs" / "kueue")
    except ComponentUnavailable as exc:
        pytest.fail(f"Kueue is unavailable: {exc.reason}", pytrace=False)
    yield server
    server.stop()
