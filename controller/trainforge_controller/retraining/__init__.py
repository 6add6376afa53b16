"""RetrainingPolicy: retraining on the cluster without CI (see ``decide.py``
for the pure decisions and DESIGN notes on what the reconciler does with them)."""
