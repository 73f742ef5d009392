"""tuner: search how a PyTorch job should run (batch, workers, dtype, memory format, compile,
threads, ...) with Optuna, run each trial in a fresh process through Ray, record it in MLflow.

Driver modules (space, study, executor, tracking, report, search, cli) never import torch;
worker modules (worker, knobs, workloads, measure, guard) never import Optuna or MLflow.
"""

__version__ = "0.1.0"
