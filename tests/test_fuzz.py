"""Bad input never crashes: thousands of generated space files and command lines.

Every invalid file gives one line naming the file and field, exit code 2, and nothing written;
no traceback ever reaches the user. benchmarks/fuzz_space.py runs the same generators longer
and prints the outcome counts quoted in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from space_strategies import NASTY_TEXTS, VALID, billion_laughs, documents, dump

from tuner.driver import envvars
from tuner.driver.cli import main
from tuner.driver.cluster import load_runtime_env
from tuner.driver.space import Space, parse_space
from tuner.driver.space.fields import STUDY_NAME_MAX, study_name_problem
from tuner.driver.stores import check_storage_url, check_tracking_uri, preflight_database, redact
from tuner.errors import SpaceError, UserError, one_line


def fast(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def _check(text: str, overrides: list[str] | None = None) -> Space | None:
    """The loader's contract: a Space, or a one-line SpaceError naming the file."""
    try:
        return parse_space(text, source="fuzz.yaml", overrides=overrides)
    except SpaceError as error:
        message = str(error)
        assert message.startswith("fuzz.yaml: ") and "\n" not in message, message
        assert len(message) < 2000, message
        return None


@pytest.mark.slow
@fast(2000)
@given(documents)
def test_generated_documents_load_or_fail_in_one_line(doc: object) -> None:
    _check(dump(doc))


@fast(1000)
@given(hs.text(max_size=300))
def test_arbitrary_text_loads_or_fails_in_one_line(text: str) -> None:
    _check(text)


@fast(600)
@given(hs.lists(hs.text(max_size=40), max_size=3))
def test_command_line_overrides_load_or_fail_in_one_line(overrides: list[str]) -> None:
    _check(dump(VALID), overrides)


@pytest.mark.parametrize("text", NASTY_TEXTS, ids=range(len(NASTY_TEXTS)))
def test_nasty_documents_load_or_fail_in_one_line(text: str) -> None:
    _check(text)


def test_billion_laughs_is_refused_in_one_line() -> None:
    # refused by the whole document's bound, before any section is read
    with pytest.raises(SpaceError, match="laughs.yaml: YAML holds more than 100,000 values"):
        parse_space(billion_laughs(), source="laughs.yaml")


def test_the_valid_document_is_valid() -> None:
    assert _check(dump(VALID)) is not None


@fast(150)
@given(documents)
def test_cli_gives_exit_2_and_writes_nothing_for_invalid_files(
        tmp_path_factory: pytest.TempPathFactory, doc: object) -> None:
    text = dump(doc)
    if _check(text) is not None:
        return  # a valid file would start a real search
    folder = tmp_path_factory.mktemp("cli")
    space = folder / "space.yaml"
    space.write_text(text, encoding="utf-8")
    before = os.getcwd()
    os.chdir(folder)
    try:
        with _captured_stderr() as err:
            code = main(["search", "--space", str(space)])
    finally:
        os.chdir(before)
    assert code == 2
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    assert sorted(p.name for p in folder.iterdir()) == ["space.yaml"]  # nothing written


@fast(300)
@given(hs.lists(hs.one_of(
    hs.sampled_from(["search", "best", "validate", "export", "--to", "run_cpu", "--space",
                     "--trials", "--timeout", "--study", "--storage", "--workdir",
                     "--tracking-uri", "--ray-address", "--set",
                     "--top", "-h", "0", "-1", "1e9", "nan", "x=1", "sqlite://", "a:b",
                     "postgresql://nobody@127.0.0.1:9/x", "http://127.0.0.1:9", "127.0.0.1:9"]),
    hs.text(max_size=20)), max_size=6))
def test_any_command_line_exits_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                       argv: list[str]) -> None:
    folder = tmp_path_factory.mktemp("argv")
    before = os.getcwd()
    os.chdir(folder)
    try:
        with _captured_stderr() as err:
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse: usage errors and --help
                code = stop.code
    finally:
        os.chdir(before)
    assert code in (0, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert err.getvalue().count("\n") == 1, err.getvalue()
    assert not (Path(folder) / "tuner-runs").exists()


class _captured_stderr:
    """Redirect sys.stderr (hypothesis runs many examples in one test: no capsys per example)."""

    def __enter__(self) -> object:
        import io
        import sys

        self.saved = sys.stderr
        self.buffer = io.StringIO()
        sys.stderr = self.buffer
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.stderr = self.saved


# -- every other input: environment variables, study names, URLs, --runtime-env ----------------

def _one_line_or_ok(call: object, secret: str = "") -> object:
    """The input contract for everything but files: a value, or a UserError of one bounded,
    printable line that never echoes a password."""
    try:
        return call()  # type: ignore[operator]
    except UserError as error:
        message = one_line(str(error))
        assert message and len(message) < 2000, message[:300]
        assert "\x1b" not in message and "\x00" not in message, repr(message[:300])
        assert not secret or secret not in message, message
        return None


@fast(400)
@given(hs.sampled_from(sorted(envvars.DURATIONS)), hs.text(max_size=60))
def test_any_duration_variable_is_a_value_or_one_line(name: str, value: str) -> None:
    saved = os.environ.get(name)
    try:
        if "\x00" in value:
            return  # no environment can hold a NUL
        os.environ[name] = value
        seconds = _one_line_or_ok(lambda: envvars.seconds(name))
        assert seconds is None or 0 <= float(seconds) <= 86400  # type: ignore[arg-type]
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@fast(600)
@given(hs.one_of(hs.text(max_size=700), hs.sampled_from(["..", ".", "a/b", "/abs", "a'b", "a b",
                                                          "x" * 600, "-x", "a\\b", "nul\x00"])))
def test_any_study_name_is_safe_or_refused(name: str) -> None:
    """A name that passes names a file inside the workdir and an MLflow filter value safely."""
    if study_name_problem(name) is not None:
        return
    assert 0 < len(name) <= STUDY_NAME_MAX
    assert "/" not in name and "\\" not in name and "'" not in name and name not in (".", "..")
    workdir = Path("/w")
    assert (workdir / "best" / f"{name}.yaml").parent == workdir / "best"


URL_PARTS = hs.tuples(
    hs.sampled_from(["sqlite:///", "sqlite://", "postgresql://", "postgresql+psycopg://",
                     "mysql://", "http://", "https://", "file:", "redis://", "", "://"]),
    hs.sampled_from(["", "user:s3cret@", "user:s3cret@[", "user:s3cret@[::1", ":s3cret@",
                     "user@"]),
    hs.text(max_size=40),
    hs.sampled_from(["", ":5432", ":99999", ":x", "/db", "/db?password=s3cret", "?token=s3cret"]))


NETWORK = ("postgresql://", "postgresql+psycopg://", "mysql://", "http://", "https://",
           "redis://", "://")  # after these, user:PASSWORD@ is a credential (else a path)


def _secret(parts: tuple[str, str, str, str]) -> str:
    return "s3cret" if parts[0] in NETWORK else ""


@fast(500)
@given(URL_PARTS)
def test_any_storage_url_is_usable_or_one_line_without_its_password(
        parts: tuple[str, str, str, str]) -> None:
    url, secret = "".join(parts), _secret(parts)
    if "\x00" in url:
        return
    if _one_line_or_ok(lambda: check_storage_url(url) or True, secret) and \
            url.startswith("sqlite:///"):
        _one_line_or_ok(lambda: preflight_database(url, "--storage"), secret)
    assert not secret or secret not in redact(url)


@fast(300)
@given(URL_PARTS)
def test_any_tracking_uri_is_usable_or_one_line_without_its_password(
        parts: tuple[str, str, str, str]) -> None:
    uri, secret = "".join(parts), _secret(parts)
    _one_line_or_ok(lambda: check_tracking_uri(uri), secret)
    assert not secret or secret not in redact(uri)


JSON_VALUES = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=10),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12)


@fast(400)
@given(hs.one_of(hs.text(max_size=200),
                 JSON_VALUES.map(json.dumps),
                 hs.integers(1, 5000).map(lambda depth: "{\"a\": " + "[" * depth)),
       hs.booleans())
def test_any_runtime_env_is_a_mapping_or_one_line(value: str, as_file: bool) -> None:
    if "\x00" in value:
        return
    loaded = _one_line_or_ok(lambda: load_runtime_env(value))
    assert loaded is None or (isinstance(loaded, dict) and loaded)
