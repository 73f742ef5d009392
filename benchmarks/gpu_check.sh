#!/usr/bin/env bash
# The GPU check a lent GPU machine runs first (device tool; under 8 minutes): what the machine
# is, the real-GPU tests, then real GPU trials of gpu_train.yaml. With Ray, Optuna and MLflow
# installed it runs a short `tuner search` of gpu_train.yaml and benchmarks/gpu_report.py;
# without them (the lent machines' image lacks them, and Ray's wheel is too big to carry) it
# runs the same trials through the node supervisor: benchmarks/gpu_trials.py.
#   bash benchmarks/gpu_check.sh [OUT_FOLDER]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="$(command -v python3 || command -v python)"
{
  echo "== machine"; date -u; nvidia-smi -L; nproc; grep MemTotal /proc/meminfo
  "$py" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
  echo "== tuner doctor"
  timeout 120 "$py" -c "from tuner.driver.doctor import report; print(report())"
} 2>&1 | tee "$out/machine.txt"
echo "== real-GPU tests"
timeout 180 "$py" -m pytest -q -p no:cacheprovider tests/test_gpu_device.py 2>&1 | tee "$out/tests.txt"
if "$py" -c "import optuna, ray, mlflow" 2>/dev/null; then
  echo "== short gpu_train.yaml search"
  timeout 330 tuner search --space search_spaces/gpu_train.yaml --workdir "$out/runs" \
    --set budget.trials=6 --set measure.max_timed_s=8 2>&1 | tee "$out/search.txt"
  "$py" benchmarks/gpu_report.py --storage "sqlite:///$out/runs/optuna.db" 2>&1 | tee -a "$out/search.txt"
else
  echo "== gpu_train.yaml trials through the node supervisor (no Ray/Optuna/MLflow here)"
  timeout 330 "$py" benchmarks/gpu_trials.py --budget-s 240 --timed-s 8 \
    --json "$out/gpu_trials.json" 2>&1 | tee "$out/trials.txt"
fi
