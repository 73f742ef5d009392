"""Bad input never crashes: thousands of generated space files and command lines.

Every invalid file gives one line naming the file and field, exit code 2, and nothing written;
no traceback ever reaches the user. benchmarks/fuzz_space.py runs the same generators longer
and prints the outcome counts quoted in docs/reliability.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from space_strategies import NASTY_TEXTS, VALID, billion_laughs, documents, dump

from tuner.driver.cli import main
from tuner.driver.space import Space, parse_space
from tuner.errors import SpaceError


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
    hs.sampled_from(["search", "best", "validate", "--space", "--trials", "--timeout", "--study",
                     "--storage", "--workdir", "--tracking-uri", "--ray-address", "--set",
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
