"""The names the SDK and the controller share: the API group and versions,
each kind's plural, and the labels and annotations one side writes and the
other reads. Defined here once; ``tests/unit/test_architecture.py`` fails on
a ``trainforge.dev`` constant defined anywhere else. No imports, no I/O.
"""

from __future__ import annotations

GROUP = "trainforge.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

TRAINING_KIND = "TrainingJob"
TRAINING_PLURAL = "trainingjobs"
TUNING_KIND = "TuningJob"
TUNING_PLURAL = "tuningjobs"

# -- labels ------------------------------------------------------------------------
MANAGED_BY = {"app.kubernetes.io/managed-by": "trainforge-controller"}
JOB_NAME_LABEL = f"{GROUP}/job-name"          # a Job/pod -> its TrainingJob
ATTEMPT_LABEL = f"{GROUP}/attempt"            # a Job/pod -> its attempt number
TUNING_JOB_LABEL = f"{GROUP}/tuning-job"      # a trial TrainingJob -> its TuningJob
TRIAL_LABEL = f"{GROUP}/trial"                # a trial TrainingJob -> its trial number

# -- annotations -------------------------------------------------------------------
STOP_ANNOTATION = f"{GROUP}/stop"                  # "true": stop the job (or tuning job)
STOP_REASON_ANNOTATION = f"{GROUP}/stop-reason"    # why a tuning job stopped a trial
EARLY_STOP_ANNOTATION = f"{GROUP}/early-stopped"   # "true": stopped by an early-stopping rule
JOB_SPEC_ANNOTATION = f"{GROUP}/job-spec"          # the TrainingJob the stagers read
CREDENTIALS_EXPIRY_ANNOTATION = f"{GROUP}/credentials-expire"

# -- the container backend's labels on its containers (local, not Kubernetes) ----------
CONTAINER_JOB_LABEL = f"{GROUP}/job"
CONTAINER_ATTEMPT_LABEL = ATTEMPT_LABEL
CONTAINER_MANAGED_BY_LABEL = f"{GROUP}/managed-by"
