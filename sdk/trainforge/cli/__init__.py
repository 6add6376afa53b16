"""The ``trainforge`` command: a thin layer over the SDK.

Exit codes scripts can rely on:
  0 success · 1 the job ended Failed or Stopped · 2 invalid input (spec, usage)
  3 no such job or model · 4 backend, storage or engine error · 5 a gate refused the model
  6 an alias moved under a promotion (conflict) · 124 --wait timed out
"""

from __future__ import annotations

from . import models as _models  # noqa: F401  (registers models on main)
from . import retraining as _retraining  # noqa: F401  (registers gate and retrain on main)
from . import tuning as _tuning  # noqa: F401  (registers tune and tuning on main)
from . import tensorboard as _tensorboard  # noqa: F401  (registers tensorboard on main)
from . import ui as _ui  # noqa: F401  (registers ui on main)
from .commands import main

__all__ = ["main"]
