#!/usr/bin/env bash
# A separate environment where IPEX can run: IPEX is archived upstream and its last release,
# 2.8.0, requires torch 2.8, while the tuner's own environment follows the registry's newest
# torch. Makes a venv with torch 2.8 + IPEX 2.8 + the tuner, then checks IPEX really runs:
# `tuner doctor`, the runtime-knob tests (ipex.optimize, bf16, compile backend "ipex" inside a
# trial process) and a small real search over the ipex knobs.
#
#   bash benchmarks/ipex_env.sh [VENV]      # default VENV: /tmp/ipex28; ~4 GB, a few minutes
#
# Then measure IPEX on ResNet-50 side by side with the default (ratios within one run):
#   VENV/bin/python benchmarks/runtime_knobs.py --best tuner-runs/best/cpu_train.yaml \
#       --only "ipex optimize" "compile ipex" --rounds 2
set -euo pipefail
venv="${1:-/tmp/ipex28}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# PyPI's torch 2.8 for Linux is the CUDA build (it pulls the nvidia-* wheels, ~3 GB); it runs
# on CPU. torchvision 0.23 is the release built against torch 2.8.
"$venv/bin/pip" install -q "torch==2.8.*" "torchvision==0.23.*" "intel-extension-for-pytorch==2.8.*"
"$venv/bin/pip" install -q -e "$repo[test]"
"$venv/bin/pip" list 2>/dev/null | grep -Ei "^(torch|torchvision|intel.extension.for.pytorch) "
"$venv/bin/tuner" doctor | grep -E "torch:|IPEX|ipex"
cd "$repo"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_runtime_knobs.py -k "ipex or missing"
work="$(mktemp -d)"
cat > "$work/ipex_check.yaml" <<'YAML'
study: ipex_check
workload: {name: tiny_cnn, options: {image_size: 16}}
knobs:
  batch_size: [32]
  dtype: [fp32, bf16]
  ipex: [none, optimize]
  compile: [none, ipex]
baseline: {batch_size: 32, dtype: fp32, ipex: none, compile: none}
try_first: [{ipex: optimize}, {ipex: optimize, dtype: bf16}, {compile: ipex},
            {ipex: optimize, compile: ipex}]
budget: {trials: 5, timeout_s: 900}
measure: {warmup_steps: 2, timed_steps: 10, min_timed_steps: 5}
guard: {steps: 3, batch_size: 16, tolerance: 0.05}
sampler: {name: random, seed: 0}
YAML
(cd "$work" && "$venv/bin/tuner" search --space ipex_check.yaml)
echo "ipex check: search records in $work/tuner-runs"
