"""Local backends: the job runs on this machine under a supervisor process
that keeps its state on disk, so any process can list, follow and stop it."""
