"""The driver: the `tuner` command. Space -> study -> executor -> records, reports, nightly.

The only writer of the Optuna storage and of MLflow; imports Optuna, Ray and MLflow, never
torch (a driver on a laptop or a CI runner needs no GPU stack).
"""
