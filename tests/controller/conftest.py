"""Controller tests: ``controller/`` on the path (until pyproject lists it),
and the committed CRD installed once on the session's cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "controller") not in sys.path:
    sys.path.insert(0, str(ROOT / "controller"))

CRD_FILE = ROOT / "k8s" / "crds" / "trainforge.dev_trainingjobs.yaml"
TUNING_CRD_FILE = ROOT / "k8s" / "crds" / "trainforge.dev_tuningjobs.yaml"


@pytest.fixture(scope="session")
def trainforge_crd(kube: Any) -> Path:
    """The committed CRDs (TrainingJob, TuningJob), applied and Established:
    the controller watches both kinds."""
    for path in (CRD_FILE, TUNING_CRD_FILE):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/trainingjobs.trainforge.dev", "crd/tuningjobs.trainforge.dev")
    return CRD_FILE
