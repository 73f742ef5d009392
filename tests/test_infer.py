"""The inference scenario on real data: scikit-learn's digits, a CNN trained once and cached,
quantization through torchao, and the accuracy guard comparing top-1 accuracy on held-out
digits with the fp32 eager reference."""

from __future__ import annotations

import dataclasses
from importlib import util
from pathlib import Path

import optuna
import pytest
from conftest import SPACES
from mlflow.tracking import MlflowClient
from trial_processes import run, trial_config

from tuner import stats
from tuner.driver import study as st
from tuner.driver.cli import main
from tuner.trial import UNSUPPORTED, WorkloadSpec

needs_torchao = pytest.mark.skipif(util.find_spec("torchao") is None,
                                   reason="needs torchao (pip install -e .)")


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 90) == pytest.approx(3.7)


def test_quantizing_a_training_workload_is_skipped_with_its_reason() -> None:
    result = run(trial_config("tiny_cnn", guard=False, quantize="dynamic_int8"))
    assert result.status == UNSUPPORTED
    assert "applies to inference workloads" in result.reason


@pytest.mark.slow
@needs_torchao
def test_digits_search_keeps_a_harmless_quantization_and_rejects_a_harmful_one(
        ray_local, workdir: Path, capsys) -> None:
    """Shipped digits_infer.yaml in full: int8 passes the guard on real held-out digits, 1-bit
    weights destroy accuracy and are rejected; neither is marked by hand."""
    assert main(["search", "--space", str(SPACES / "digits_infer.yaml")]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="digits_infer",
                              storage=f"sqlite:///{workdir / 'optuna.db'}")
    trials = study.get_trials()
    by_quantize = {t.user_attrs[st.KNOBS]["quantize"]: t for t in reversed(trials)}
    by_quantize["none"] = trials[0]  # the baseline: the fp32 eager reference
    baseline = by_quantize["none"].user_attrs[st.METRICS]
    assert baseline["quality"] > 0.9  # a real classifier of real digits
    for percent in (50, 90, 99):
        assert baseline[f"latency_p{percent}_ms"] > 0
    assert baseline["latency_p50_ms"] <= baseline["latency_p90_ms"] <= baseline["latency_p99_ms"]

    int8 = by_quantize["dynamic_int8"].user_attrs[st.METRICS]
    assert abs(int8["guard_loss"] - baseline["quality"]) <= 0.01  # guard_loss: the quality
    assert int8["guard_violation"] <= 0
    one_bit = by_quantize["weight_int1"]
    assert one_bit.user_attrs[st.METRICS]["guard_loss"] < 0.5
    assert one_bit.user_attrs[st.METRICS]["guard_violation"] > 0
    assert "quality" in one_bit.user_attrs[st.REASON]
    assert "rejected by the accuracy guard" in out
    best = (workdir / "best" / "digits_infer.yaml").read_text()
    assert "weight_int1" not in best

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits_infer")
    runs = {r.data.tags["tuner.trial"]: r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("tuner.kind") == "trial"}
    assert runs[str(one_bit.number)].data.tags["tuner.verdict"] == "rejected"
    assert runs[str(by_quantize["dynamic_int8"].number)].data.tags["tuner.verdict"] == "accepted"
    assert "latency_p99_ms" in runs[str(by_quantize["none"].number)].data.metrics
    assert list((workdir / "cache").glob("digits_cnn-*.pt"))  # trained once, cached


@pytest.mark.slow
@needs_torchao
def test_static_int8_through_pt2e_keeps_digits_accuracy() -> None:
    """Static int8 (torch.export, X86InductorQuantizer, calibration on training digits,
    convert, inductor lowering) really runs and keeps accuracy on held-out digits."""
    config = trial_config("digits_cnn", guard=True, quantize="static_int8", batch_size=64,
                          threads="default", timed_steps=10)
    result = run(config)
    assert result.status == "ok", result.reason
    reference = run(trial_config("digits_cnn", guard=True, batch_size=64, threads="default"))
    assert abs(result.metrics["quality"] - reference.metrics["quality"]) <= 0.01
    assert result.metrics["compile_s"] > 0  # lowered by inductor, compile reported apart


@pytest.mark.slow
@needs_torchao
def test_static_int8_the_quantizer_cannot_handle_is_unsupported_with_its_reason() -> None:
    """torchao 0.18's X86InductorQuantizer fails on ResNet's residual blocks under torch 2.15:
    the choice is recorded as unsupported (and skipped by the study after), not a crash."""
    config = trial_config("torchvision_infer", guard=False, quantize="static_int8",
                          batch_size=2, timed_steps=2)
    config = dataclasses.replace(config, workload=WorkloadSpec(
        "torchvision_infer", {"model": "resnet18", "image_size": 32, "eval_samples": 8}))
    result = run(config)
    if result.status == "ok":  # a later torchao handles it: then it must really run
        return
    assert result.status == UNSUPPORTED, result.reason
    assert result.reason.startswith("quantize=static_int8: torchao ")
    assert result.info["unsupported_choice"] == {"quantize": "static_int8"}


@pytest.mark.slow
def test_shipped_cpu_infer_space_runs_in_quick_mode(ray_local, workdir: Path, capsys) -> None:
    """The shipped ResNet-50 inference space, shrunk to seconds: small images, no compile."""
    code = main(["search", "--space", str(SPACES / "cpu_infer.yaml"), "--trials", "3",
                 "--set", "workload.options.image_size=32", "--set", "knobs.compile=[none]",
                 "--set", "workload.options.eval_samples=8", "--set", "measure.timed_steps=3",
                 "--set", "measure.min_timed_steps=3", "--set", "measure.warmup_steps=1"])
    out = capsys.readouterr().out
    assert code == 0, out
    study = optuna.load_study(study_name="cpu_infer",
                              storage=f"sqlite:///{workdir / 'optuna.db'}")
    baseline = study.get_trials()[0].user_attrs[st.METRICS]
    assert baseline["quality"] == pytest.approx(1.0)  # the reference agrees with itself
    assert baseline["latency_p99_ms"] >= baseline["latency_p50_ms"] > 0


@pytest.mark.slow
def test_onnxruntime_backend_runs_the_exported_model_with_the_same_accuracy() -> None:
    if any(util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")):
        pytest.skip("needs onnxruntime, onnx, onnxscript (pip install -e .)")
    ort = run(trial_config("digits_cnn", guard=True, backend="onnxruntime", batch_size=64,
                           threads=1))
    assert ort.status == "ok", ort.reason
    reference = run(trial_config("digits_cnn", guard=True, batch_size=64, threads=1))
    assert abs(ort.metrics["quality"] - reference.metrics["quality"]) <= 0.01
    clash = run(trial_config("digits_cnn", guard=False, backend="onnxruntime",
                             quantize="dynamic_int8"))
    assert clash.status == UNSUPPORTED
    assert clash.reason.startswith("backend=onnxruntime with quantize=dynamic_int8")
    assert clash.info["unsupported_choice"] == {"backend": "onnxruntime",
                                                "quantize": "dynamic_int8"}


def test_a_combination_found_unsupported_skips_only_configs_making_all_of_it(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    st.remember_unsupported(study, {"backend": "onnxruntime", "quantize": "dynamic_int8"}, "no")
    st.remember_unsupported(study, {"compile": "ipex"}, "missing")
    assert st.known_unsupported(study, {"backend": "onnxruntime", "quantize": "none"}) is None
    assert st.known_unsupported(study, {"backend": "torch", "quantize": "dynamic_int8"}) is None
    assert st.known_unsupported(study, {"backend": "onnxruntime", "quantize": "dynamic_int8",
                                        "threads": 1}) == "no"
    assert st.known_unsupported(study, {"compile": "ipex"}) == "missing"
