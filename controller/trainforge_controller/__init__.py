"""The trainforge Kubernetes controller: TrainingJob -> Indexed Job + headless
Service; TuningJob -> trial TrainingJobs.

Layout: ``crds`` (CRDs generated from the SDK's models), ``catalog`` (instance
types from a ConfigMap), ``builder`` and ``status`` (pure decisions),
``reconciler`` (the TrainingJob's thin apply), ``tuning`` (the TuningJob's,
over the SDK's pure tuning engine), ``main`` (the manager: informers, work
queue, leader election, metrics). ``sdk`` never imports this package; the
names both share are ``trainforge.names``.
"""

from trainforge.names import GROUP, VERSION
from trainforge.names import TRAINING_KIND as KIND
from trainforge.names import TRAINING_PLURAL as PLURAL

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION"]
