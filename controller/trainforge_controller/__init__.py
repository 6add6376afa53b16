"""The trainforge Kubernetes controller: TrainingJob -> Indexed Job + headless Service.

Layout: ``crds`` (CRD generated from the SDK's models), ``catalog`` (instance
types from a ConfigMap), ``builder`` and ``status`` (pure decisions),
``reconciler`` (the thin apply), ``main`` (watch loop, work queue, leader
election, metrics). ``sdk`` never imports this package.
"""

from trainforge.names import GROUP, VERSION
from trainforge.names import TRAINING_KIND as KIND
from trainforge.names import TRAINING_PLURAL as PLURAL

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION"]
