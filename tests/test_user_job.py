"""The user's own code as the workload (tuner.worker.user_job): a real trial process runs a
function or a script whose loop `tuned.steps` marks, times it by the same rules as the tuner's
own loop, ends it when measured, and runs it again as the guard's experiment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import TESTS
from trial_processes import run, trial_config

from tuner.errors import SpaceError
from tuner.trial import FAILED, OK, MeasureSettings, WorkloadSpec
from tuner.worker.apply import Tuned


def _job(name: str, guard: bool = True, timed_steps: int = 6, **options: object):
    config = trial_config(guard=guard, timed_steps=timed_steps)
    return dataclasses.replace(config, workload=WorkloadSpec(f"user_jobs:{name}", options,
                                                             job="function"))


def test_a_function_is_timed_at_its_marked_steps_and_ended_when_measured(tmp_path: Path) -> None:
    after = tmp_path / "after"
    result = run(_job("linear", samples=4096, after=str(after)))
    assert result.status == OK, result.reason
    assert len(result.step_times_s) == 6  # timed_steps, past the warm-up step
    assert result.metrics["samples_per_sec"] == pytest.approx(
        16 / result.metrics["step_time_median_s"])  # the trial's batch_size knob: 16
    assert not after.exists()  # the job ended at the step after the last one timed
    # the guard ran the job again: steps + 1 losses it reported, at the guard's batch size
    assert len(result.guard_losses) == 4 and result.guard_loss > 0
    assert result.info["scenario"] == "train"


def test_epochs_and_accumulation_make_no_empty_steps() -> None:
    """Three batches an epoch: each epoch's end falls inside a real step, never a step of its
    own; `every=2` makes two batches one step of twice the samples."""
    result = run(_job("linear", samples=48, epochs=1000, every=2, guard=False))
    assert result.status == OK, result.reason
    median = result.metrics["step_time_median_s"]
    assert min(result.step_times_s) > median / 10, result.step_times_s
    assert result.metrics["samples_per_sec"] == pytest.approx(32 / median)


def test_dict_batches_and_a_job_that_runs_out_of_data(tmp_path: Path) -> None:
    after = tmp_path / "after"
    result = run(_job("linear", samples=16 * 5, dict_batches=True, after=str(after), guard=False,
                      timed_steps=50))
    assert result.status == OK, result.reason
    assert len(result.step_times_s) == 4  # 5 batches: 1 warm-up and 4 timed, then no more
    assert after.exists()  # out of data, the job ran on to its end


def test_a_loader_the_batch_size_knob_cannot_reach_is_noted() -> None:
    result = run(_job("own_loader", guard=False))
    assert result.status == OK, result.reason
    assert result.metrics["samples_per_sec"] == pytest.approx(
        5 / result.metrics["step_time_median_s"])  # its own batches, counted as they are
    assert ("the job's batches hold 5 samples, not the trial's batch_size=16: build its loader "
            "with tuned.loader(dataset, ...)") in result.info["note"]


@pytest.mark.slow  # a trial process each
@pytest.mark.parametrize(("name", "options", "expected"), [
    ("unmarked", {}, "ended without a timed step: mark its loop with `for batch in "
                     "tuned.steps(loader)`"),
    ("linear", {"samples": 16}, "the loop ended after 1 warm-up step(s) and no timed step"),
    ("linear", {"samples": 4096, "report": False}, "reported no loss for the accuracy guard: "
                                                  "call tuned.report(loss=...)"),
    ("failing", {}, "RuntimeError: the job's own bug"),
    ("absent", {}, "user_jobs has no function absent"),
])
def test_a_job_that_cannot_be_measured_says_why(name: str, options: dict[str, object],
                                                expected: str) -> None:
    result = run(_job(name, **options))
    assert result.status == FAILED
    assert expected in result.reason, result.reason


@pytest.mark.slow
def test_a_script_runs_as_main_with_its_arguments() -> None:
    config = dataclasses.replace(trial_config(timed_steps=5), workload=WorkloadSpec(
        str(TESTS / "user_script.py"), {}, job="script", args=["--width", "12"]))
    result = run(config)
    assert result.status == OK, result.reason
    assert len(result.step_times_s) == 5 and len(result.guard_losses) == 4
    missing = dataclasses.replace(config, workload=WorkloadSpec(
        str(TESTS / "user_script.py"), {}, job="script", args=[]))
    failed = run(missing)
    assert failed.status == FAILED and "exited with status 2" in failed.reason, failed.reason


def test_outside_a_search_steps_are_the_loop_and_report_does_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_CONFIG", raising=False)
    tuned = Tuned.load()
    assert not tuned.in_search
    assert list(tuned.steps(range(5), every=2)) == [0, 1, 2, 3, 4]
    tuned.report(loss=torch.tensor(1.0))  # nothing to report to


def test_spaces_name_a_function_or_a_script(tmp_path: Path, monkeypatch) -> None:
    from tuner.driver.space import load_space

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n", encoding="utf-8")
    base = ("study: s\nknobs: {batch_size: [8, 16]}\nbaseline: {batch_size: 8}\n"
            "budget: {trials: 2}\n")

    def space(workload: str) -> object:
        path = tmp_path / "space.yaml"
        path.write_text(base + f"workload: {workload}\n", encoding="utf-8")
        return load_space(path)

    loaded = space("{script: train.py, args: [--epochs, 3]}")
    assert loaded.workload == WorkloadSpec(str(tmp_path / "train.py"), {}, job="script",
                                           args=["--epochs", "3"])
    loaded = space("{function: 'user_jobs:linear', options: {samples: 8}, scenario: train}")
    assert loaded.workload.job == "function" and loaded.workload.options == {"samples": 8}
    for workload, expected in [
        ("{script: nothere.py}", "workload.script: 'nothere.py': no such file"),
        ("{function: user_jobs}", "workload.function: expected 'package.module:function'"),
        ("{function: 'no_such_module:f'}", "workload.function: module 'no_such_module' not "
                                           "found; install it or add its folder to PYTHONPATH"),
        ("{name: resnet50, function: 'user_jobs:linear'}", "workload: give exactly one of"),
        ("{name: resnet50, args: [x]}", "workload.args: belongs to your own job"),
        ("{function: 'user_jobs:linear', args: [x]}", "workload.args: only a script takes args"),
        ("{script: train.py, options: {a: 1}}", "workload.options: a script takes args"),
        ("{script: train.py, scenario: eval}", "workload.scenario: must be one of train, infer"),
    ]:
        with pytest.raises(SpaceError) as raised:
            space(workload)
        assert expected in str(raised.value), str(raised.value)


@pytest.mark.slow
def test_measure_settings_bound_a_users_loop_by_time() -> None:
    """max_timed_s ends a job's timing as it ends the tuner's own loop."""
    config = _job("linear", samples=100_000, guard=False)
    config = dataclasses.replace(config, measure=MeasureSettings(
        warmup_steps=1, timed_steps=100_000, min_timed_steps=3, max_timed_s=0.5))
    result = run(config)
    assert result.status == OK, result.reason
    assert 3 <= len(result.step_times_s) < 100_000
    assert "max_timed_s=0.5 reached" in result.info["note"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hf_bert", "lightning_linear"])
def test_a_frameworks_trainer_is_timed_through_the_tuners_callback(tmp_path: Path,
                                                                   name: str) -> None:
    """A job whose loop is a transformers or lightning Trainer: each step marked by the
    callback, the job ended when measured, each guard step's loss reported."""
    option = {"hf_bert": "output_dir", "lightning_linear": "root"}[name]
    result = run(_job(name, timed_steps=5, **{option: str(tmp_path)}))
    assert result.status == OK, result.reason
    assert len(result.step_times_s) == 5
    assert result.metrics["samples_per_sec"] == pytest.approx(
        16 / result.metrics["step_time_median_s"])
    assert len(result.guard_losses) == 4 and result.guard_loss > 0


@pytest.mark.slow
def test_inference_only_choices_are_refused_with_their_reason() -> None:
    """Quantization in a training job is refused before it runs; in an inference job,
    `Tuned.model` cannot apply it (no calibration inputs) and says so: unsupported, not
    silently unapplied."""
    from tuner.trial import UNSUPPORTED

    config = _job("linear", samples=4096, guard=False)
    trained = run(dataclasses.replace(config, knobs={**config.knobs, "quantize": "dynamic_int8"}))
    assert trained.status == UNSUPPORTED and "applies to inference workloads" in trained.reason
    inferred = run(dataclasses.replace(
        config, knobs={**config.knobs, "quantize": "dynamic_int8"},
        workload=dataclasses.replace(config.workload, scenario="infer")))
    assert inferred.status == UNSUPPORTED, inferred.reason
    assert "quantize=dynamic_int8: Tuned.model does not apply it" in inferred.reason
