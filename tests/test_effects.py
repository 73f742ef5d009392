"""Knob effects from measured pairs (tuner/driver/effects.py): the review's answer to "which
knobs mattered", read off trials one knob apart, never a model fitted on a sweep's sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.driver import effects as fx
from tuner.driver import plots
from tuner.driver.ranking import Row

BASE = {"batch_size": 256, "dtype": "fp32", "memory_format": "contiguous", "num_workers": 0}


def _row(number: int, sps: float, cv: float = 0.02, role: str = "sweep", **changes: Any) -> Row:
    return Row(number=number, role=role, status="ok", reason="", knobs={**BASE, **changes},
               metrics={"samples_per_sec": sps, "step_time_cv": cv}, violation=0.0)


# the published study's shape: bf16 + channels_last together made the big step (a prior),
# then the sweep varied one knob at a time around it
ROWS = [
    _row(0, 10.0, role="baseline"),
    _row(1, 31.0, role="prior", dtype="bf16", memory_format="channels_last"),
    _row(2, 24.0, batch_size=64, dtype="bf16", memory_format="channels_last"),
    _row(3, 30.5, num_workers=1, dtype="bf16", memory_format="channels_last", cv=0.03),
    _row(4, 12.0, dtype="fp32", memory_format="channels_last"),
    _row(5, 14.0, dtype="bf16"),
]


def test_each_knob_is_measured_against_the_best_config_one_knob_apart() -> None:
    effects = {effect.label: effect for effect in fx.knob_effects(ROWS, "samples_per_sec")}
    assert set(effects) == {"batch_size=64", "num_workers=1", "dtype=fp32",
                            "memory_format=contiguous"}
    assert round(effects["dtype=fp32"].ratio, 3) == round(12.0 / 31.0, 3)
    assert (effects["dtype=fp32"].trial, effects["dtype=fp32"].against) == (4, 1)
    assert effects["dtype=fp32"].distance == 0  # measured against the best config itself
    assert effects["num_workers=1"].within_noise  # 0.98x with 2-3% spread: no effect
    assert not effects["batch_size=64"].within_noise and effects["batch_size=64"].ratio < 1


def test_the_markdown_says_what_was_never_measured_apart(tmp_path: Path) -> None:
    text = fx.effects_markdown(ROWS, "samples_per_sec", [*BASE, "threads"])
    assert "| dtype | fp32 | bf16 | 0.39x |" in text
    assert "| num_workers | 1 | 0 | 0.98x |" in text and "within noise" in text
    assert "Never measured one knob apart (effect unknown): threads" in text
    assert plots.effects_plot(ROWS, "samples_per_sec", list(BASE), tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 10_000
    assert plots.effects_plot(ROWS[:1], "samples_per_sec", list(BASE), tmp_path / "n.png") \
        is None


def test_a_fitted_importance_needs_the_samplers_own_varied_trials() -> None:
    class Trial:
        def __init__(self, role: str, params: dict[str, Any]) -> None:
            self.user_attrs = {"role": role, "status": "ok"}
            self.params = params

    sweep = [Trial("sweep", {"dtype": d, "batch_size": 256}) for d in ("fp32", "bf16")] * 6
    assert not fx.importance_supported(sweep, ["dtype", "batch_size"])
    own = [Trial("candidate", {"dtype": ("fp32", "bf16")[i % 2], "batch_size": 2 ** (i % 3 + 5)})
           for i in range(10)]
    assert fx.importance_supported(own, ["dtype", "batch_size"])
    assert not fx.importance_supported(own, ["dtype", "batch_size", "threads"])  # never varied
