from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SPACES

from tuner.driver.space import load_space, parse_space
from tuner.errors import SpaceError
from tuner.knobs import numerics_key

MINIMAL = """
workload: tiny_cnn
knobs:
  batch_size: [16, 32]
  dtype: [fp32, bf16]
baseline: {batch_size: 32}
"""


def test_every_shipped_space_validates() -> None:
    files = sorted(SPACES.glob("*.yaml"))
    assert files, "search_spaces/ ships at least one space"
    for file in files:
        space = load_space(file)
        assert space.knobs and space.study


def test_minimal_space_gets_defaults() -> None:
    space = parse_space(MINIMAL, source="mini.yaml", default_study="mini")
    assert space.study == "mini"
    assert space.workload.name == "tiny_cnn"
    assert space.baseline["dtype"] == "fp32" and space.baseline["batch_size"] == 32
    assert space.objective == "samples_per_sec"
    assert space.size() == 4


def test_a_budget_of_time_only() -> None:
    space = load_space(SPACES / "quick_train.yaml", ["budget.trials=null"])
    assert space.budget.trials is None
    assert space.budget.describe() == f"{space.budget.timeout_s:g} s, no trial count"
    assert space.budget.confirmations(None) == 2  # confirmed as the time runs out


def test_conditional_knob_only_when_compile_is_on() -> None:
    space = parse_space(MINIMAL.replace("knobs:", "knobs:\n  compile: [none, inductor]\n"
                                       "  compile_mode: [default, max-autotune]"))
    assert "compile_mode" not in space.full_config({"compile": "none"})
    on = space.full_config({"compile": "inductor", "compile_mode": "max-autotune"})
    assert on["compile_mode"] == "max-autotune"


def test_numerics_key_ignores_speed_only_knobs() -> None:
    a = {"batch_size": 16, "threads": 1, "dtype": "bf16", "memory_format": "contiguous",
         "compile": "none"}
    b = {**a, "batch_size": 64, "threads": "default", "num_workers": 2}
    assert numerics_key(a) == numerics_key(b)
    assert numerics_key(a) != numerics_key({**a, "dtype": "fp32"})


def test_integer_range_and_override() -> None:
    text = MINIMAL.replace("batch_size: [16, 32]", "batch_size: {low: 8, high: 64, log: true}\n"
                           "  num_workers: {low: 0, high: 6, step: 2}")
    space = parse_space(text, overrides=["budget.trials=3", "workload.options.image_size=8"])
    assert space.knobs["num_workers"].int_range.high == 6
    # a batch size's log range is searched at its powers of two
    assert space.knobs["batch_size"].choices == (8, 16, 32, 64)
    odd = parse_space(MINIMAL.replace("batch_size: [16, 32]",
                                      "batch_size: {low: 12, high: 100, log: true}"))
    assert odd.knobs["batch_size"].choices == (12, 16, 32, 64, 100)
    assert space.budget.trials == 3
    assert space.workload.options == {"image_size": 8}


BAD = [
    ("", "", "file is empty"),
    ("workload: [unclosed", "", "YAML syntax error at line 1"),
    ("- a\n- b", "", "expected a mapping"),
    (MINIMAL + "colour: blue\n", "colour", "unknown section"),
    (MINIMAL.replace("dtype:", "flux:"), "knobs.flux", "unknown knob"),
    (MINIMAL.replace("[fp32, bf16]", "[fp32, fp64]"), "knobs.dtype.choices[1]",
     "must be one of"),
    (MINIMAL.replace("[16, 32]", "{low: 64, high: 8}"), "knobs.batch_size", "bad range"),
    (MINIMAL.replace("[16, 32]", "[16, -3]"), "knobs.batch_size.choices[1]", "integer >= 1"),
    (MINIMAL.replace("[16, 32]", "[]"), "knobs.batch_size.choices", "non-empty"),
    (MINIMAL.replace("tiny_cnn", "gpt9"), "workload.name", "unknown workload"),
    (MINIMAL.replace("tiny_cnn", "no_such_pkg.mod:make"), "workload.name", "not found"),
    (MINIMAL.replace("{batch_size: 32}", "{batch_size: 128}"), "baseline.batch_size",
     "not among knobs.batch_size"),
    (MINIMAL + "budget: {trials: 0}\n", "budget.trials", "from 1"),
    (MINIMAL + "budget: {trials: true}\n", "budget.trials", "must be an integer"),
    (MINIMAL + "budget: {timeout_s: .nan}\n", "budget.timeout_s", "must be a number"),
    (MINIMAL + "measure: {timed_steps: 2, min_timed_steps: 5}\n", "measure.min_timed_steps",
     "must not exceed"),
    (MINIMAL + "guard: {mode: fuzzy}\n", "guard.mode", "relative"),
    (MINIMAL + "objective: latency\n", "objective", "samples_per_sec"),
    (MINIMAL + "cost: {price_per_hour: -1}\n", "cost.price_per_hour", "from"),
    ("workload: tiny_cnn\n", "knobs", "missing section"),
]


@pytest.mark.parametrize("text,field,words", BAD)
def test_bad_space_names_file_and_field(text: str, field: str, words: str) -> None:
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="bad.yaml")
    message = str(caught.value)
    assert message.startswith("bad.yaml: ")
    assert caught.value.field == field
    assert words in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "nope.yaml")


def test_a_compile_mode_without_compile_keeps_the_model_eager() -> None:
    """A config that carries compile_mode while compile is none (a baseline filled with every
    knob's default) must not compile: the mode means nothing without a backend."""
    from tuner.knobs import REGISTRY, RunSetup

    eager = RunSetup()
    for name, value in (("compile", "none"), ("compile_mode", "default")):
        REGISTRY[name].apply(value, eager)
    assert eager.compile_options is None
    compiled = RunSetup()
    for name, value in (("compile", "inductor"), ("compile_mode", "max-autotune")):
        REGISTRY[name].apply(value, compiled)
    assert compiled.compile_options == {"backend": "inductor", "mode": "max-autotune"}


def test_pass_env_names_variables_and_nothing_else() -> None:
    import pytest

    from tuner.driver.space import parse_space
    from tuner.errors import SpaceError

    text = ("workload: tiny_cnn\nknobs: {batch_size: [8]}\nbaseline: {batch_size: 8}\n"
            "trial: {pass_env: [DATA_DIR, HF_TOKEN_FILE]}\n")
    assert parse_space(text).trial.pass_env == ("DATA_DIR", "HF_TOKEN_FILE")
    assert parse_space(text.replace("trial: {pass_env: [DATA_DIR, HF_TOKEN_FILE]}", "")
                       ).trial.pass_env == ()
    for bad, message in (("[A=B]", "not a variable name"), ("DATA_DIR", "must be a list"),
                         ("[1X]", "not a variable name"), ("[3]", "must be a non-empty string")):
        with pytest.raises(SpaceError, match=f"trial.pass_env.*{message}"):
            parse_space(text.replace("[DATA_DIR, HF_TOKEN_FILE]", bad))


def test_a_resolved_space_is_a_space_file_that_reads_back_the_same() -> None:
    """`tuner validate --print-config` and the search's space.resolved.yaml artifact: every
    shipped space, written back with its defaults, loads to the same Space (issue 22)."""
    from tuner.driver.space.resolved import as_params, resolved_yaml

    for path in sorted(SPACES.glob("*.yaml")):
        space = load_space(path, ["budget.trials=7"])
        text = resolved_yaml(space)
        assert parse_space(text, source=str(path), default_study="other") == space, path
        assert "trials: 7" in text and "warmup_steps:" in text  # overrides and defaults
        params = as_params(space)
        assert params["space.budget.trials"] == "7" and len(params) < 100  # one MLflow batch


def test_the_shipped_json_schema_is_current_and_accepts_every_shipped_space() -> None:
    """search_spaces/space.schema.json is what `tuner schema` prints, and every shipped space
    file (and its common base) passes it; a typo'd knob or choice does not (issue 22)."""
    import json

    import jsonschema
    import yaml

    from tuner.driver.space.schema import schema

    shipped = json.loads((SPACES / "space.schema.json").read_text())
    assert shipped == json.loads(json.dumps(schema())), "run: tuner schema > " \
        "search_spaces/space.schema.json"
    validator = jsonschema.Draft202012Validator(shipped)
    files = sorted(SPACES.glob("*.yaml")) + sorted(SPACES.glob("common/*.yaml"))
    for path in files:
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema="), path
        data = json.loads(json.dumps(yaml.safe_load(text), default=str))
        assert not list(validator.iter_errors(data)), path
    bad = yaml.safe_load((SPACES / "quick_train.yaml").read_text().replace("num_workers:",
                                                                            "num_wrkers:"))
    assert list(validator.iter_errors(json.loads(json.dumps(bad))))
    bad = yaml.safe_load((SPACES / "quick_train.yaml").read_text().replace("bf16]", "bf61]"))
    assert list(validator.iter_errors(json.loads(json.dumps(bad))))


def test_extends_merges_a_base_file_and_refuses_cycles(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "workload: {name: tiny_cnn, options: {image_size: 16}}\n"
        "knobs: {batch_size: [16, 32], dtype: [fp32, bf16]}\n"
        "measure: {timed_steps: 7, max_cv: 0.3}\n", encoding="utf-8")
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nknobs: {dtype: null, threads: [default, 1]}\n"
        "measure: {timed_steps: 9}\n", encoding="utf-8")
    space = load_space(tmp_path / "child.yaml")
    assert space.study == "child" and space.workload.options == {"image_size": 16}
    assert list(space.knobs) == ["batch_size", "threads"]  # dtype removed, threads added
    assert (space.measure.timed_steps, space.measure.max_cv) == (9, 0.3)  # merged by key
    (tmp_path / "base.yaml").write_text("extends: child.yaml\n", encoding="utf-8")
    with pytest.raises(SpaceError, match="extends: child.yaml extends this file again"):
        load_space(tmp_path / "child.yaml")
    (tmp_path / "lonely.yaml").write_text("extends: nowhere.yaml\n", encoding="utf-8")
    with pytest.raises(SpaceError, match="lonely.yaml: extends: no such file"):
        load_space(tmp_path / "lonely.yaml")
