"""The node supervisor: what an executor runs on a node for each trial. It starts the trial
process (`python -m tuner.worker`) with its environment, cores, priority, time limit and memory
cap, watches it from /proc, and turns whatever happened into a TrialResult.

Never imports torch, Optuna or MLflow: it must stay small beside the process it times.
"""
