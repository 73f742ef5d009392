"""GPU trials and the priced CPU-versus-GPU search, on a machine without a GPU.

What can be real here is: Ray's scheduling of GPU trials (the session's Ray declares one GPU,
as a GPU node does), the trial process finding no GPU and saying so, the CPU half of a
two-objective search with per-device prices and its Pareto front, and the GPU code paths that
run on a CPU too (gradient scaling, loader options). Only the GPU itself is stood in for: a
`Host` describing one, for the knobs' checks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import SPACES
from mlflow.tracking import MlflowClient

from tuner.driver import ranking as rk
from tuner.driver import report as rp
from tuner.driver import study as st
from tuner.driver.cli import main
from tuner.driver.executors.base import unschedulable
from tuner.driver.executors.ray import ClusterShape, RayExecutor
from tuner.driver.space import parse_space
from tuner.errors import SpaceError, UserError
from tuner.knobs import REGISTRY, Host, RunSetup
from tuner.trial import GuardSettings, MeasureSettings, TrialConfig, WorkloadSpec
from tuner.worker.runner import TrainRun, configure_backends, make_loader
from tuner.workloads.vision import tiny_cnn

NO_GPU = Host(cpu_count=2)
TURING = Host(cpu_count=8, has_cuda=True, gpu_name="Tesla T4", gpu_capability=(7, 5),
              gpu_bf16=False, torch_cuda="12.8")
HOPPER = Host(cpu_count=16, has_cuda=True, gpu_name="NVIDIA H100", gpu_capability=(9, 0),
              gpu_bf16=True, torch_cuda="12.8")


def _reason(knob: str, value: object, host: Host, **values: object) -> str | None:
    return REGISTRY[knob].unsupported_reason(value, host, {knob: value, **values})


def test_gpu_choices_say_why_they_cannot_run() -> None:
    assert "no CUDA GPU visible to this trial process" in _reason("device", "cuda", NO_GPU)
    assert _reason("device", "cuda", HOPPER) is None and _reason("device", "cpu", NO_GPU) is None
    assert "Ampere" in _reason("dtype", "bf16", TURING, device="cuda")
    assert _reason("dtype", "bf16", HOPPER, device="cuda") is None
    assert _reason("dtype", "bf16", TURING, device="cpu") is None  # CPU autocast runs it
    assert "Tesla T4 is 7.5" in _reason("tf32", "on", TURING, device="cuda")
    assert "needs device=cuda" in _reason("compile_mode", "reduce-overhead", HOPPER)
    assert _reason("compile_mode", "reduce-overhead", HOPPER, device="cuda") is None
    assert "CPU only" in _reason("quantize", "static_int8", HOPPER, device="cuda")
    assert "device=cpu" in _reason("backend", "onnxruntime", HOPPER, device="cuda")
    assert "not CUDA" in _reason("ipex", "optimize", HOPPER, device="cuda")
    assert "not CUDA" in _reason("compile", "ipex", HOPPER, device="cuda")


def test_gpu_knobs_act_only_on_cuda_trials_and_fill_the_setup() -> None:
    space = parse_space("""
workload: tiny_cnn
knobs:
  device: [cpu, cuda]
  num_workers: [0, 2]
  prefetch_factor: [2, 4]
  persistent_workers: [off, on]
  pin_memory: [off, on]
  tf32: [default, on]
  cudnn_benchmark: [off, on]
  dtype: [fp32, fp16]
cost: {cpu: {price_per_hour: 0.357}, cuda: {price_per_hour: 1.212}}
""")
    cpu = space.full_config({"pin_memory": "on", "tf32": "on", "prefetch_factor": 4})
    assert not {"pin_memory", "tf32", "cudnn_benchmark", "prefetch_factor"} & set(cpu)
    cuda = space.full_config({"device": "cuda", "num_workers": 2, "prefetch_factor": 4,
                              "persistent_workers": "on", "pin_memory": "on", "tf32": "on",
                              "cudnn_benchmark": "on", "dtype": "fp16"})
    setup = RunSetup()
    for name, value in cuda.items():
        REGISTRY[name].apply(value, setup)
    assert (setup.device, setup.prefetch_factor, setup.persistent_workers, setup.pin_memory,
            setup.tf32, setup.cudnn_benchmark) == ("cuda", 4, True, True, True, True)
    assert setup.grad_scaling and setup.autocast_dtype == "float16"  # fp16 on a GPU: scaled
    on_cpu = RunSetup()
    for name, value in space.full_config({"dtype": "fp16"}).items():
        REGISTRY[name].apply(value, on_cpu)
    assert not on_cpu.grad_scaling  # on the CPU fp16 stays unscaled: the guard judges it
    # a bare YAML on/off (a boolean) is the same choice as the string
    assert REGISTRY["pin_memory"].check_choice(True) == "on"


def test_gradient_scaling_and_loader_options_run(tmp_path: Path) -> None:
    """The GPU training step's scaler path and the loader options, run on the CPU (GradScaler
    and DataLoader work there too): real steps, finite losses, the scale really applied."""
    setup = RunSetup(batch_size=8, autocast_dtype="float16", grad_scaling=True, num_workers=1,
                     prefetch_factor=3, persistent_workers=True)
    run = TrainRun(tiny_cnn(image_size=8), setup, num_batches=3, batch_size=8, data_seed=0)
    assert run.scaler is not None and run.loader.prefetch_factor == 3
    assert run.loader.persistent_workers
    losses = [float(run.step(batch)) for batch in run.batches()]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert run.scaler.get_scale() > 1  # the loss was scaled up before backward
    plain = make_loader(list(range(16)), RunSetup(pin_memory=True), 4)
    assert not plain.pin_memory  # nothing to pin for on a CPU trial


def test_a_cuda_out_of_memory_error_is_an_oom_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.worker.run import failure_result

    monkeypatch.setenv("TUNER_MEMORY_LIMIT_MB", "19000")
    gpu = failure_result(torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"))
    assert gpu.status == "oom"
    assert gpu.reason.startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00")
    assert "trial.memory_mb" not in gpu.reason  # the host's cap is not what ran out
    host = failure_result(MemoryError("cannot allocate"))
    assert host.status == "oom" and "trial memory limit 19,000 MB" in host.reason
    assert failure_result(RuntimeError("boom")).status == "failed"


def test_gpu_math_flags_use_torchs_current_api() -> None:
    """TF32 through fp32_precision (torch 2.9+; mixing it with the legacy allow_tf32 flags
    raises), cuDNN's benchmark flag; set per trial process, so restored here."""
    before = (torch.backends.cuda.matmul.fp32_precision,
              torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.benchmark)
    try:
        configure_backends(RunSetup(device="cuda", tf32=True, cudnn_benchmark=True))
        assert (torch.backends.cuda.matmul.fp32_precision,
                torch.backends.cudnn.conv.fp32_precision) == ("tf32", "tf32")
        assert torch.backends.cudnn.benchmark
        configure_backends(RunSetup(device="cuda", tf32=False))
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.fp32_precision = before[0]
        torch.backends.cudnn.conv.fp32_precision = before[1]
        torch.backends.cudnn.benchmark = before[2]


def test_prices_per_device_and_objectives_are_validated() -> None:
    base = """
workload: tiny_cnn
knobs: {device: [cpu, cuda], batch_size: [16, 64]}
baseline: {batch_size: 64}
"""
    with pytest.raises(SpaceError, match=r"cost\.cpu: missing: trials run on cpu and cuda"):
        parse_space(base + "cost: {price_per_hour: 1.0}\n")
    with pytest.raises(SpaceError, match=r"cost\.cuda\.price_per_hour: missing"):
        parse_space(base + "cost: {cpu: {price_per_hour: 0.3}, cuda: {instance: x}}\n")
    with pytest.raises(SpaceError, match="objective: give one of"):
        parse_space(base + "objective: [samples_per_sec, samples_per_sec]\n"
                    "cost: {cpu: {price_per_hour: 0.3}, cuda: {price_per_hour: 1.2}}\n")
    space = parse_space(base + "objective: [samples_per_sec, samples_per_dollar]\n"
                        "cost: {as_of: 2024-06-01, cpu: {price_per_hour: 0.357}, "
                        "cuda: {price_per_hour: 1.212, instance: g5.2xlarge}}\n")
    assert space.objectives == ("samples_per_sec", "samples_per_dollar")
    assert space.cost.price_for("cpu") == 0.357 and space.cost.price_for("cuda") == 1.212
    assert space.cost.worker("cuda").instance == "g5.2xlarge" and space.cost.as_of == "2024-06-01"
    one_device = parse_space("workload: tiny_cnn\nknobs: {device: [cuda]}\n"
                             "baseline: {device: cuda}\ncost: {price_per_hour: 1.212}\n")
    assert one_device.cost.price_for("cuda") == 1.212  # one device: one price is enough


def test_a_study_keeps_its_objectives(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    text = "workload: tiny_cnn\nknobs: {batch_size: [16]}\nbaseline: {batch_size: 16}\n"
    st.open_study(parse_space(text), storage, "s")
    st.open_study(parse_space(text), storage, "s")  # the same objectives: resumes
    two = parse_space(text + "objective: [samples_per_sec, samples_per_dollar]\n")
    with pytest.raises(UserError, match="a study keeps its objectives"):
        st.open_study(two, storage, "s")


def _row(number: int, device: str, sps: float, price: float, role: str = "candidate") -> rk.Row:
    return rk.Row(number=number, role=role, status="ok", reason="",
                  knobs={"device": device, "batch_size": 16 if device == "cpu" else 512},
                  metrics={"samples_per_sec": sps, "price_per_hour": price,
                           "samples_per_dollar": sps * 3600 / price, "step_time_cv": 0.01},
                  violation=0.0)


def test_pareto_front_and_the_cheapest_device_line() -> None:
    """The published study's figures: tuned CPU 40.73 samples/s at 0.357 $/h, tuned GPU 930.9
    at 1.212 $/h: the GPU is 6.7x cheaper per sample, and both are on the front only if
    neither beats the other on both objectives."""
    rows = [_row(0, "cpu", 9.12, 0.357, role=st.BASELINE), _row(1, "cpu", 40.73, 0.357),
            _row(2, "cuda", 930.9, 1.212), _row(3, "cuda", 340.0, 1.212)]
    both = ("samples_per_sec", "samples_per_dollar")
    assert [r.number for r in rk.pareto_front(rows, both)] == [2]  # faster and cheaper
    line = rp.cheapest_line(rows)
    assert line.startswith("Most samples per USD: cuda, trial 2 (device=cuda batch_size=512): "
                           "2,765,050 samples/USD at 1.212 USD/h")
    assert "6.73x the best cpu config (trial 1, 410,723)" in line
    assert "30.07x the baseline (91,966)" in line
    # a GPU priced so high that the CPU is cheaper per sample: both ends of the front
    pricey = [*rows[:2], _row(2, "cuda", 930.9, 40.0)]
    assert [r.number for r in rk.pareto_front(pricey, both)] == [2, 1]
    table = rp.format_table(pricey, "samples_per_sec", objectives=both)
    assert "* Pareto front (samples_per_sec vs samples_per_dollar): trial(s) 1, 2" in table
    assert "Most samples per USD: cpu, trial 1" in table


def test_a_cluster_without_gpus_refuses_gpu_trials_before_ray_queues_them() -> None:
    choice, reason = unschedulable({"device": "cuda"}, gpus_wanted=1, cluster_gpus=0)
    assert choice == {"device": "cuda"} and "the Ray cluster has no GPU" in reason
    assert unschedulable({"device": "cuda"}, gpus_wanted=1, cluster_gpus=1) is None
    assert unschedulable({"device": "cpu"}, gpus_wanted=0, cluster_gpus=0) is None


def test_a_gpu_trial_asks_for_what_a_gpu_node_has() -> None:
    """A cluster of 64-CPU CPU nodes and 8-CPU one-GPU nodes: a CUDA trial with torch's default
    threads asks for 8 CPUs and a GPU (64 would never be scheduled), a CPU trial for 64; on a
    96-CPU node with 8 GPUs a CUDA trial asks for its GPU's share, 12, so 8 run at once."""
    mixed = ClusterShape.of([{"CPU": 64.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}])
    assert (mixed.node_cpus, mixed.cpus_per_gpu, mixed.gpus) == (64, 8, 2)
    assert mixed.cpus_for({"device": "cuda", "threads": "default", "num_workers": 4}) == 8
    assert mixed.cpus_for({"device": "cpu", "threads": "default"}) == 64
    assert mixed.cpus_for({"device": "cuda", "threads": 2, "num_workers": 2}) == 4
    big = ClusterShape.of([{"CPU": 96.0, "GPU": 8.0}])
    assert big.cpus_for({"device": "cuda", "threads": "default"}) == 12


def _config(number: int, device: str) -> TrialConfig:
    return TrialConfig(
        study="gpu-scheduling", trial_number=number, workload=WorkloadSpec("tiny_cnn"),
        knobs={"device": device, "batch_size": 16, "threads": 1},
        measure=MeasureSettings(warmup_steps=1, timed_steps=20, min_timed_steps=20,
                                max_timed_s=5),
        guard=GuardSettings(run=False), time_limit_s=120)


@pytest.mark.slow
def test_ray_runs_one_gpu_trial_per_gpu_and_cpu_trials_beside_them(ray_local) -> None:
    """Two CUDA trials and a CPU trial, submitted at once to a Ray that declares one GPU and
    two CPUs: each CUDA trial gets GPU 0 in turn (never both at once: the second waits for
    room); the CPU trial runs beside the first, sees no GPU, and is measured."""
    executor = RayExecutor()
    executor.start()
    assert executor.cluster_gpus == 1
    first, second, cpu = (executor.submit(_config(n, d))
                          for n, d in ((0, "cuda"), (1, "cuda"), (2, "cpu")))
    assert (first.gpus, second.gpus, cpu.gpus) == (1, 1, 0)
    assert (first.cpus, cpu.cpus) == (1, 1)
    # the second CUDA trial waits in the executor, not in Ray's queue, where its wait would
    # count against its time limit; the CPU trial is not held behind it
    assert not first.waiting and second.waiting and not cpu.waiting
    results = {}
    pending = [first, second, cpu]
    while pending:
        for item, result in executor.wait_any(pending, 60):
            pending.remove(item)
            results[item.config.trial_number] = result
    a, b, c = results[0], results[1], results[2]
    for gpu_trial in (a, b):
        assert gpu_trial.status == "unsupported", gpu_trial
        assert "no CUDA GPU visible to this trial process" in gpu_trial.reason
        assert "CUDA_VISIBLE_DEVICES='0'" in gpu_trial.reason  # the GPU Ray gave it
        assert gpu_trial.info["gpu_ids"] == ["0"] and gpu_trial.info["gpus_requested"] == 1
    assert c.status == "ok" and c.info["gpu_ids"] == [] and c.info["gpus_requested"] == 0
    earlier, later = sorted((a, b), key=lambda r: r.info["started_at"])
    assert later.info["started_at"] >= earlier.info["ended_at"] - 0.05  # one GPU: one at a time
    assert c.info["started_at"] < earlier.info["ended_at"]  # CPU work did not wait for it


def test_gpu_train_space_on_a_machine_without_a_gpu_stops_with_the_reason(
        ray_local, workdir: Path, capsys) -> None:
    code = main(["search", "--space", str(SPACES / "gpu_train.yaml"), "--trials", "1",
                 "--set", "workload.options.image_size=32"])
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "the baseline trial failed" in captured.err
    assert "device=cuda: no CUDA GPU visible to this trial process" in captured.err


@pytest.mark.slow
def test_cpu_vs_gpu_space_runs_in_quick_mode_with_prices_and_a_pareto_front(
        ray_local, workdir: Path, capsys) -> None:
    """The shipped two-device space, shrunk to seconds: the CUDA trials are scheduled on the
    declared GPU and come back unsupported (the second is skipped without a process); the CPU
    trials are priced at the CPU's price; the front, the one-line verdict and the plot are
    there."""
    code = main([
        "search", "--space", str(SPACES / "cpu_vs_gpu_train.yaml"), "--trials", "5",
        "--set", "workload.name=tiny_cnn", "--set", "workload.options={image_size: 16}",
        "--set", "knobs.batch_size=[16, 64]", "--set", "baseline.batch_size=64",
        "--set", "knobs.compile=[none]", "--set", "knobs.num_workers=[0]",
        "--set", "try_first=[{device: cuda}, {device: cuda, batch_size: 16}, {batch_size: 16}]",
        "--set", ("measure={warmup_steps: 1, timed_steps: 5, min_timed_steps: 3, "
                  "max_timed_s: 1, max_cv: 1.0}"),
        "--set", "guard.steps=1", "--set", "guard.batch_size=2",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    study = optuna.load_study(study_name="cpu_vs_gpu_train",
                              storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert len(study.directions) == 2
    trials = {t.number: t for t in study.get_trials()}
    # by config, not by number: on a CPU with AVX512-BF16 or AMX the hardware prior (bf16 +
    # channels_last) is queued ahead of the try_first configs
    first_cuda, second_cuda = [t for t in study.get_trials()
                               if t.user_attrs.get(st.KNOBS, {}).get("device") == "cuda"][:2]
    assert first_cuda.user_attrs[st.KNOBS]["batch_size"] == 64  # try_first's {device: cuda}
    assert first_cuda.user_attrs[st.STATUS] == "unsupported"
    assert "device=cuda: no CUDA GPU visible" in first_cuda.user_attrs[st.REASON]
    assert (f"trial {second_cuda.number} skipped, not started (not counted against the "
            "budget): device=cuda") in out
    measured = [t for t in trials.values() if t.user_attrs.get(st.STATUS) == "ok"]
    assert len(measured) >= 2
    for trial in measured:
        metrics = trial.user_attrs[st.METRICS]
        assert metrics["price_per_hour"] == 0.357  # the CPU worker's price
        assert metrics["samples_per_dollar"] == pytest.approx(
            metrics["samples_per_sec"] * 3600 / 0.357)
        assert trial.values == [metrics["samples_per_sec"], metrics["samples_per_dollar"]]
    assert "* Pareto front (samples_per_sec vs samples_per_dollar): trial(s)" in out
    assert "Most samples per USD: cpu, trial" in out
    best = yaml.safe_load((workdir / "best" / "cpu_vs_gpu_train.yaml").read_text())
    assert best["pareto_front"] and best["knobs"]["device"] == "cpu"

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cpu_vs_gpu_train")
    [parent] = [r for r in client.search_runs([experiment.experiment_id])
                if r.data.tags.get("tuner.kind") == "search"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.png", "summary.txt", "cpu_vs_gpu_train.yaml"} <= artifacts
    assert parent.data.tags["tuner.most_samples_per_dollar"].startswith("Most samples per USD")


def test_setup_fields_cover_every_knob() -> None:
    """Every field a knob fills is read where the trial runs: a knob that filled a field nobody
    read would be searched for nothing."""
    trial_process = Path(__file__).resolve().parent.parent / "tuner" / "worker"
    text = "".join(path.read_text() for path in sorted(trial_process.glob("*.py")))
    assert "setup.batch_size" in text  # the trial process's code was read
    for field in dataclasses.fields(RunSetup):
        assert f"setup.{field.name}" in text, field.name
