"""tuner: search how a PyTorch job should run (batch, workers, dtype, memory format, compile,
threads, ...) with Optuna, run each trial in a fresh process through Ray, record it in MLflow.

Three places code runs, one package each (docs/architecture.md):
- `tuner.driver`: the `tuner` command; imports Optuna, Ray and MLflow, never torch.
- `tuner.node`: the supervisor Ray runs on a node; starts and polices one trial process.
- `tuner.worker`: the trial process itself; imports torch, never Optuna, MLflow or Ray.
The modules at this level are their shared vocabulary: the trial contract (`trial`), errors,
the knob and workload registries, the metric registry, step statistics, the progress file.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tuned"]


def __getattr__(name: str) -> Any:
    """`from tuner import Tuned`, without importing torch for the driver's `import tuner`."""
    if name == "Tuned":
        from tuner.worker.apply import Tuned

        return Tuned
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
