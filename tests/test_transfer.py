"""Knowledge across machines (issue 23): a new study warm-starts from other studies of the same
workload in the same storage, the most similar machines first, the source named."""

from __future__ import annotations

import optuna
import pytest
from conftest import SPACES

from tuner import metrics as mx
from tuner.driver import study as st
from tuner.driver import transfer
from tuner.driver.space import load_space

HERE = {"device": "cpu", "cpu_features": ["avx512_bf16", "amx_bf16", "avx512f"],
        "versions": {"torch": "2.14.1"}}


def test_similarity_weighs_device_cpu_features_gpu_and_torch() -> None:
    assert transfer.similarity(HERE, HERE) == (1.0, "same device, same CPU features, same "
                                                    "GPU, same torch")
    older = {**HERE, "cpu_features": ["avx512f"], "versions": {"torch": "2.14.0"}}
    score, why = transfer.similarity(HERE, older)
    assert score == pytest.approx((3 + 3 / 3 + 2 + 1) / 10)
    assert why == "same device, similar CPU features, same GPU, similar torch"
    gpu = {"device": "cuda", "gpu": "NVIDIA H200", "versions": {"torch": "2.9.1"}}
    assert transfer.similarity(HERE, gpu)[0] < transfer.MIN_SIMILARITY


def _source(storage: optuna.storages.BaseStorage, name: str, info: dict, best: dict,
            workload: dict) -> None:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr(st.WORKLOAD, workload)
    study.set_user_attr(st.OBJECTIVE, mx.SAMPLES_PER_SEC)
    for role, knobs, speed in ((st.BASELINE, {"batch_size": 16}, 10.0),
                               ("sweep", best, 30.0)):
        study.add_trial(optuna.trial.create_trial(value=speed, user_attrs={
            st.ROLE: role, st.STATUS: "ok", st.KNOBS: knobs, st.INFO: info,
            st.METRICS: {mx.SAMPLES_PER_SEC: speed}}))


def test_the_most_similar_studies_best_configs_come_first() -> None:
    space = load_space(SPACES / "quick_train.yaml")
    workload = {"name": space.workload.name, "options": space.workload.options}
    storage = optuna.storages.InMemoryStorage()
    _source(storage, "same_machine", HERE, {"batch_size": 64, "num_workers": 1}, workload)
    _source(storage, "older_cpu", {**HERE, "cpu_features": ["avx512f"]},
            {"batch_size": 256}, workload)
    _source(storage, "a_gpu", {"device": "cuda", "gpu": "H200"}, {"batch_size": 16,
                                                                  "num_workers": 1}, workload)
    _source(storage, "other_workload", HERE, {"batch_size": 16, "num_workers": 1},
            {"name": "resnet50", "options": {}})
    found = transfer.sources(storage, "new_study", workload, HERE)
    assert [source.study for source in found] == ["same_machine", "older_cpu"]
    picked = transfer.transfer_configs(space, found, 2)
    assert [(config["batch_size"], source.study) for config, _, source in picked] == [
        (64, "same_machine"), (256, "older_cpu")]
    assert all(role == transfer.TRANSFER for _, role, _ in picked)
    assert transfer.transfer_configs(space, found, 1)[0][0]["batch_size"] == 64
