"""Hyperparameter search, written once for both worlds: pure decisions over
the trials the platform recorded (what to try next, which trial to stop, when
the tuning job is done). The local tuning supervisor and the controller only
observe trials and carry out a :class:`~trainforge.tuning.engine.Plan`.

- ``space``   the tuned ranges <-> Optuna distributions <-> hyperparameter strings; grids
- ``records`` what a trial looked like when last observed (the engine's only input)
- ``rules``   early stopping: the median rule and asynchronous successive halving
- ``engine``  ``plan(spec, trials, ...)``: new trials, trials to stop, the verdict
"""

from .engine import Plan, best_trial, plan, propose, rebuild_study
from .records import TrialRecord, TrialState, objective_series

__all__ = ["Plan", "TrialRecord", "TrialState", "best_trial", "objective_series", "plan", "propose",
           "rebuild_study"]
