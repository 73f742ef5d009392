"""Bad input: one line naming the file/flag and the field, exit code 2, nothing created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SPACES

from tuner.driver.cli import main

GOOD = SPACES / "quick_train.yaml"


def _bad_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


CASES = {
    "missing file": lambda tmp: str(tmp / "missing.yaml"),
    "syntax error": lambda tmp: _bad_file(tmp, "knobs: {batch_size: [16, 32]\n"),
    "empty file": lambda tmp: _bad_file(tmp, ""),
    "unknown section": lambda tmp: _bad_file(tmp, GOOD.read_text() + "extra: 1\n"),
    "unknown knob": lambda tmp: _bad_file(tmp, GOOD.read_text().replace("num_workers:",
                                                                        "num_wrkers:", 1)),
    "bad range": lambda tmp: _bad_file(tmp, GOOD.read_text().replace(
        "batch_size: [16, 64, 256]", "batch_size: {low: 9, high: 2}")),
    "unknown workload": lambda tmp: _bad_file(tmp, GOOD.read_text().replace("tiny_cnn",
                                                                           "resnet9000")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_space_one_line_exit_2_nothing_written(case: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    space = CASES[case](tmp_path)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["search", "--space", space]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tuner: error: ")
    assert space in err
    assert set(tmp_path.iterdir()) == before  # no storage, no MLflow store, no folders
    assert main(["validate", space]) == 2


def test_bad_flags_are_refused_before_anything_starts(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(GOOD), "--storage", "not a url"]) == 2
    assert "--storage" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--tracking-uri", "ftp://x/y"]) == 2
    assert "--tracking-uri" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--set", "budget.trials"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--ray-address", "127.0.0.1:9"]) == 2
    assert "--ray-address: nothing answers at 127.0.0.1:9" in capsys.readouterr().err
    assert main(["best", "--study", "nope"]) == 2
    assert "no study storage" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--runtime-env", "missing.yaml"]) == 2
    assert "--runtime-env: no such file missing.yaml" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--runtime-env", '{"working_dir": ']) == 2
    assert "--runtime-env: cannot parse" in capsys.readouterr().err
    (tmp_path / "env.yaml").write_text("- working_dir\n", encoding="utf-8")
    assert main(["search", "--space", str(GOOD), "--runtime-env", "env.yaml"]) == 2
    assert "--runtime-env: expected a mapping" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--storage",
                 "postgresql://tuner:hunter2@127.0.0.1:9/x"]) == 2
    err = capsys.readouterr().err
    assert "--storage: cannot connect" in err and "hunter2" not in err
    assert [path.name for path in tmp_path.iterdir()] == ["env.yaml"]


def test_urls_are_shown_without_their_passwords() -> None:
    from tuner.driver.stores import redact

    assert redact("postgresql://tuner:s3cr%40t@db:5432/optuna") == "postgresql://tuner:***@db:5432/optuna"
    assert redact("http://me:pw@mlflow:5000") == "http://me:***@mlflow:5000"
    assert redact("postgresql://db/x?sslmode=require&password=pw") == (
        "postgresql://db/x?sslmode=require&password=***")
    for plain in ("sqlite:////tmp/optuna.db", "http://mlflow:5000", "postgresql://tuner@db/x"):
        assert redact(plain) == plain


STORE_CASES = {  # flag values that pass parsing and fail on the machine: (argv, words)
    "no postgres driver or server": (["--storage", "postgresql://nobody@127.0.0.1:9/x"],
                                     "--storage: "),
    "not a sqlite file": (["--storage", "sqlite:///notes.txt"], "is not a SQLite database"),
    "workdir is a file": (["--workdir", "notes.txt"], "--workdir: "),
    "workdir cannot be made": (["--workdir", "/proc/tuner-nope"], "--workdir: cannot create"),
    "no mlflow server": (["--tracking-uri", "http://127.0.0.1:9"], "--tracking-uri: cannot use"),
    "unknown study": (["--study", "x"], "no study storage"),
}


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_unusable_stores_are_one_line_and_write_nothing(
        case: str, ray_local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a database\n", encoding="utf-8")
    extra, words = STORE_CASES[case]
    command = ["best", *extra] if case == "unknown study" else [
        "search", "--space", str(GOOD), *extra]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_validate_and_the_real_entry_point(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "validate", str(GOOD)],
                        capture_output=True, text=True, cwd=tmp_path, check=False)
    assert ok.returncode == 0 and "ok: study quick_train" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space",
                          _bad_file(tmp_path, "knobs: [1")], capture_output=True, text=True,
                         cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "YAML syntax error" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]
    flag = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space", str(GOOD),
                           "--trials", "-3"], capture_output=True, text=True, cwd=tmp_path,
                          check=False)
    assert flag.returncode == 2 and "--trials" in flag.stderr


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("TUNER_MLFLOW_RETRY_S", "abc", "TUNER_MLFLOW_RETRY_S: expected seconds from 0 to 86400"),
    ("TUNER_MLFLOW_WAIT_S", "-5", "TUNER_MLFLOW_WAIT_S: expected seconds from 0 to 86400"),
    ("TUNER_HOST_LOCK", "/proc/nowhere/lock", "TUNER_HOST_LOCK: cannot open the local-search lock"),
])
def test_a_bad_environment_variable_is_one_line_and_nothing_starts(
        tmp_path: Path, variable: str, value: str, expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tuner.driver.cli", "search", "--space", str(GOOD),
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True,
                          env={**os.environ, variable: value}, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr
    assert not (tmp_path / "w").exists()  # refused before any store (or Ray) was made


@pytest.mark.parametrize("name", ["team/resnet", "../..", "/abs", "a'b", "x" * 600, ".hidden",
                                  "ünï", ""])
def test_a_bad_study_name_is_one_line(tmp_path: Path, name: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["search", "--space", str(GOOD)], ["best"]):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--study", name, "--workdir", str(tmp_path / "w")])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--study" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("budget: {trials: 4, trials: 400}", "key 'trials' given twice"),
    ("budget: {trials: 4}\nbudget: {trials: 5}", "key 'budget' given twice"),
    ("budget: {trials: " + "9" * 5000 + "}", "number too long to read"),
    ("objective: " + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ('a: &a ["x","x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
     'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n'
     'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nobjective: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]',
     "more than 100,000 values"),
])
def test_hostile_yaml_is_one_line(tmp_path: Path, text: str, expected: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(GOOD.read_text(encoding="utf-8").replace("budget:", "old_budget:")
                     .replace("objective:", "old_objective:") + "\n" + text + "\n",
                     encoding="utf-8")
    assert main(["validate", str(space)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


@pytest.mark.parametrize(("override", "expected"), [
    ("budget.trials=" + "9" * 5000, "number too long to read"),
    ("budget.trials=" + "[" * 5000, "nested too deeply"),
    ("budget.trials={a: 1, a: 2}", "key 'a' given twice"),
])
def test_hostile_set_values_are_one_line(override: str, expected: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GOOD), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_best_on_a_database_that_holds_no_study_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tuner best` reads: given MLflow's database by mistake, it says so and adds no table."""
    import sqlite3

    other = tmp_path / "mlflow.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE experiments (id INTEGER)")
    before = other.read_bytes()
    assert main(["best", "--study", "s", "--storage", f"sqlite:///{other}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no Optuna study storage" in err
    assert other.read_bytes() == before


def test_an_unparsable_url_is_still_shown_without_its_password() -> None:
    from tuner.driver.stores import redact

    shown = redact("postgresql://tuner:hunter2@[::1:5432/db")
    assert "hunter2" not in shown and "tuner:***@" in shown


def test_validate_says_a_custom_workload_is_code(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    examples = SPACES.parent / "examples"
    monkeypatch.syspath_prepend(str(examples))  # where my_workload lives
    assert main(["validate", str(examples / "custom_workload.yaml")]) == 0
    assert "note: workload my_workload:make is your code" in capsys.readouterr().out
    assert main(["validate", str(GOOD)]) == 0
    assert "is your code" not in capsys.readouterr().out  # a built-in workload


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--storage", "postgresql://tuner:hunter2@[::1:5432/db", "is not a database URL"),
    ("--runtime-env", "[" * 3000 + "]" * 3000, "--runtime-env: cannot read"),
    ("--runtime-env", "{" + "[" * 3000 + "]" * 3000 + "}", "--runtime-env: cannot parse"),
])
def test_malformed_urls_and_runtime_envs_are_one_line(
        tmp_path: Path, flag: str, value: str, expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--space", str(GOOD), flag, value,
                 "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "hunter2" not in err
    assert len(err) < 400 and not (tmp_path / "w").exists()


def test_an_unreachable_mlflow_server_is_refused_before_ray_starts(tmp_path: Path) -> None:
    code = ("import sys\nfrom tuner.driver.cli import main\n"
            f"code = main(['search', '--space', {str(GOOD)!r}, '--workdir', "
            f"{str(tmp_path / 'w')!r}, '--tracking-uri', 'http://127.0.0.1:9'])\n"
            "ray = sys.modules.get('ray')\n"
            "print(code, bool(ray and ray.is_initialized()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.stdout.split()[-2:] == ["2", "False"], done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "--tracking-uri: cannot use MLflow" in done.stderr


def test_version_and_python_dash_m_tuner() -> None:
    """`tuner --version`, and `python -m tuner` as the `tuner` command (issue 22)."""
    import subprocess
    import sys

    from tuner import __version__

    done = subprocess.run([sys.executable, "-m", "tuner", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"tuner {__version__}", done
    helped = subprocess.run([sys.executable, "-m", "tuner", "export", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "{env,shell,run_cpu,hf,lightning}" in helped.stdout


@pytest.mark.parametrize(("edit", "expected"), [
    (("num_workers:", "num-workers:"), "knobs.num-workers: unknown knob; did you mean "
                                       "num_workers?"),
    (("budget:", "budgit:"), "budgit: unknown section; did you mean budget?"),
    (("timeout_s: 300", "timout_s: 300"), "budget.timout_s: unknown field; did you mean "
                                          "timeout_s?"),
    (("dtype: [fp32, bf16]", "dtype: [fp32, bf61]"), "knobs.dtype.choices[1]: did you mean "
                                                      "bf16?"),
    (("name: tpe", "name: tpr"), "sampler.name: did you mean tpe?"),
])
def test_a_near_miss_says_did_you_mean(edit: tuple[str, str], expected: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    space = _bad_file(tmp_path, GOOD.read_text().replace(*edit, 1))
    assert main(["validate", space]) == 2
    assert expected in capsys.readouterr().err


def test_script_friendly_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--format json for validate, a --result-json that could not be written refused before
    anything starts, and every subcommand's help shows an example (issue 22)."""
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(GOOD), "--format", "json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["ok"] and checked["configs"] == 48 and checked["trials"] == 6
    assert main(["search", "--space", str(GOOD), "--result-json", "missing/r.json"]) == 2
    assert "--result-json: folder" in capsys.readouterr().err
    assert main(["search", "--space", str(GOOD), "--result-json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["studies"]) == 2 and "no study storage" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    from tuner.driver.arguments import parser

    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, command in commands.items():
        assert "example: tuner " + name in command.format_help(), name
