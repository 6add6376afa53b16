"""The trainforge Kubernetes controller: TrainingJob -> Indexed Job + headless Service.

Layout: ``crds`` (CRD generated from the SDK's models), ``catalog`` (instance
types from a ConfigMap), ``builder`` and ``status`` (pure decisions),
``reconciler`` (the thin apply), ``main`` (watch loop, work queue, leader
election, metrics). ``sdk`` never imports this package.
"""

GROUP = "trainforge.dev"
VERSION = "v1alpha1"
PLURAL = "trainingjobs"
KIND = "TrainingJob"
