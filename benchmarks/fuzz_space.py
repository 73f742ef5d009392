"""Fuzz the space loader and the command line longer than the suite does, and count outcomes.

Same generators as tests/test_fuzz.py. Prints the table in docs/reliability.md: for each kind
of input, how many were tried, loaded as valid, refused in one line (by the field named), and
how many did anything else (a traceback, a multi-line message): that last column must be 0.

    PYTHONPATH=tests python benchmarks/fuzz_space.py --documents 20000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from space_strategies import NASTY_TEXTS, VALID, documents, dump

from tuner.driver.cli import main as cli
from tuner.driver.space import SECTIONS, parse_space
from tuner.errors import SpaceError


class Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.fields: Counter[str] = Counter()
        self.bad: list[str] = []

    def load(self, text: str, overrides: list[str] | None = None) -> bool:
        try:
            parse_space(text, source="fuzz.yaml", overrides=overrides)
        except SpaceError as error:
            message = str(error)
            if "\n" in message or not message.startswith("fuzz.yaml: "):
                self.outcomes["other"] += 1
                self.bad.append(message[:200])
            else:
                self.outcomes["refused in one line"] += 1
                section = error.field.split(".")[0].split("[")[0]
                if section.startswith("--set"):
                    section = "--set"
                elif section and section not in SECTIONS:
                    section = "(unknown section)"
                self.fields[section or "(whole file)"] += 1
            return False
        except Exception as error:  # noqa: BLE001 - what this script counts
            self.outcomes["other"] += 1
            self.bad.append(f"{type(error).__name__}: {error}"[:200])
            return False
        self.outcomes["valid"] += 1
        return True


def run(examples: int, strategy: hs.SearchStrategy, check: object) -> None:
    settings(max_examples=examples, deadline=None, database=None,
             suppress_health_check=list(HealthCheck))(given(strategy)(check))()


def _loader(tally: Tally, make: Any) -> Any:
    def check(value: object) -> None:
        tally.load(*make(value))

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--texts", type=int, default=5_000)
    parser.add_argument("--overrides", type=int, default=3_000)
    parser.add_argument("--cli", type=int, default=500)
    args = parser.parse_args()
    rows = []

    for name, examples, strategy, make in (
        ("generated YAML documents", args.documents, documents, lambda d: (dump(d), None)),
        ("arbitrary text", args.texts, hs.text(max_size=300), lambda t: (t, None)),
        ("--set overrides on a valid file", args.overrides,
         hs.lists(hs.text(max_size=40), max_size=3), lambda o: (dump(VALID), o)),
    ):
        tally = Tally()
        started = time.perf_counter()
        run(examples, strategy, _loader(tally, make))
        rows.append((name, tally, time.perf_counter() - started))
    tally = Tally()
    for text in NASTY_TEXTS:
        tally.load(text)
    rows.append(("hand-written nasty files (aliases, tags, nesting, billion laughs)", tally, 0.0))

    cli_tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def through_cli(doc: object) -> None:
            text = dump(doc)
            if not Tally().load(text):
                space = folder / "space.yaml"
                space.write_text(text, encoding="utf-8")
                err = io.StringIO()
                before = os.getcwd()
                os.chdir(folder)
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = cli(["search", "--space", str(space)])
                finally:
                    os.chdir(before)
                clean = (code == 2 and err.getvalue().count("\n") == 1
                         and sorted(p.name for p in folder.iterdir()) == ["space.yaml"])
                cli_tally.outcomes["exit 2, one line, nothing written" if clean else "other"] += 1

        started = time.perf_counter()
        run(args.cli, documents, through_cli)
        rows.append(("invalid files through `tuner search`", cli_tally,
                     time.perf_counter() - started))

    print("| input | tried | valid | refused in one line | anything else |")
    print("|---|---:|---:|---:|---:|")
    for name, tally, _ in rows:
        refused = tally.outcomes["refused in one line"] + tally.outcomes[
            "exit 2, one line, nothing written"]
        print(f"| {name} | {sum(tally.outcomes.values()):,} | {tally.outcomes['valid']:,} | "
              f"{refused:,} | {tally.outcomes['other']} |")
    print()
    fields: Counter[str] = Counter()
    for _, tally, _ in rows:
        fields.update(tally.fields)
    print("refusals by field: " + ", ".join(f"{name} {count:,}" for name, count
                                              in fields.most_common()))
    for _, tally, _ in rows:
        for message in tally.bad[:5]:
            print("UNEXPECTED:", message)


if __name__ == "__main__":
    main()
