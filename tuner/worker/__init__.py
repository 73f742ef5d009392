"""The trial process, `python -m tuner.worker CONFIG.json RESULT.json`: knobs applied, workload
built, steps timed, accuracy guard run, one TrialResult written.

Imports torch; never Optuna, MLflow or Ray: it sees only the plain TrialConfig it is given.
"""
