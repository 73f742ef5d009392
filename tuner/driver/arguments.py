"""The command line's grammar: every subcommand, its flags, their help and an example each.
A bad flag is one line naming it (exit 2), like every other error of the tuner.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from tuner import __version__
from tuner.errors import REGRESSION_EXIT_CODE, USAGE_EXIT_CODE, one_line

EPILOG = "Review trials with: mlflow ui --backend-store-uri sqlite:///tuner-runs/mlflow.db"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the tuner."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {one_line(message)} "
                                   f"(see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuner", description=(
        "Search how a PyTorch job should run (batch size, workers, dtype, memory format, "
        "torch.compile, threads) with Optuna, Ray and MLflow."), epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser("search", help="run (or resume) a search over a space file",
                                 epilog="example: tuner search --space "
                                 "search_spaces/quick_train.yaml --set budget.trials=6")
    search.add_argument("--space", required=True, help="search-space YAML file")
    search.add_argument("--study", type=_study_name,
                        help="study name (default: the space's study)")
    _add_run_flags(search, "total trials the study should hold")

    nightly = commands.add_parser(
        "nightly", help="tonight's search: warm-started from earlier nights, last night's "
        f"champion re-measured, exit {REGRESSION_EXIT_CODE} on a regression",
        epilog="example: tuner nightly --space search_spaces/cpu_train.yaml "
        "--result-json nightly.json (from cron, a systemd timer or a CI schedule)")
    nightly.add_argument("--space", required=True, help="search-space YAML file")
    nightly.add_argument("--date", help="the night, YYYY-MM-DD (default: today); a night already "
                         "run is not measured again, its verdict is given again")
    _add_run_flags(nightly, "trials tonight")

    _add_reading_commands(commands)
    _add_result_commands(commands)
    return parser


def _add_reading_commands(commands: Any) -> None:
    """What reads a space, a storage or this machine, and runs nothing."""
    best = commands.add_parser("best", help="show a study's top configs and its best config",
                               epilog="example: tuner best --study cpu_train --format json")
    best.add_argument("--study", required=True, type=_study_name, help="study name")
    _add_locations(best)
    best.add_argument("--top", type=_positive_int, default=10, help="rows in the table")
    _add_format(best)

    log = commands.add_parser("log", help="what a failed trial left: its traceback and output",
                              epilog="example: tuner log --study cpu_train --trial 7")
    log.add_argument("--study", required=True, type=_study_name, help="study name")
    log.add_argument("--trial", required=True, type=int, help="trial number")
    _add_locations(log)

    studies = commands.add_parser("studies", help="the studies in a storage, with their trials "
                                  "and best", epilog="example: tuner studies --storage "
                                  "postgresql://HOST/tuner")
    _add_locations(studies)
    _add_format(studies)

    doctor = commands.add_parser("doctor", help="what this machine has, and which knob choices "
                                 "it can run", epilog="example: tuner doctor --format json")
    _add_format(doctor)

    knobs = commands.add_parser("knobs", help="every knob: its choices, default and effect",
                                epilog="example: tuner knobs --format json")
    knobs.add_argument("--format", choices=("text", "json", "markdown"), default="text")

    commands.add_parser("schema", help="print the JSON Schema of a space file (for editors)",
                        epilog="example: tuner schema > space.schema.json, then the first "
                        "line of a space: # yaml-language-server: $schema=space.schema.json")

    validate = commands.add_parser("validate", help="check a space file without running it",
                                   epilog="example: tuner validate search_spaces/cpu_train.yaml "
                                   "--set budget.trials=4")
    validate.add_argument("space", help="search-space YAML file")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.add_argument("--print-config", action="store_true",
                          help="print the space as the tuner reads it: overrides applied, "
                          "every default written out (a valid space file itself)")
    _add_format(validate)


def _add_run_flags(parser: argparse.ArgumentParser, trials_help: str) -> None:
    """What `search` and `nightly` share: budget, stores, cluster, overrides, output."""
    parser.add_argument("--trials", type=_positive_int,
                        help=f"{trials_help} (default: the space's budget.trials)")
    parser.add_argument("--timeout", type=_positive_float, metavar="S",
                        help="stop starting trials after S seconds (default: budget.timeout_s)")
    _add_locations(parser)
    _add_cluster(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the space, e.g. --set budget.trials=4")
    _add_result_json(parser)
    _add_verbosity(parser)


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                          default=0, help="only warnings, failures and the result (for cron)")
    loudness.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                          help="also a failed trial's traceback and output under its line")


def _add_result_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--result-json", type=Path, metavar="PATH",
                        help="also write the outcome as JSON here (best config, figures, counts, "
                        "exit code) for a CI step; with $GITHUB_STEP_SUMMARY set, a markdown "
                        "summary is appended there too")


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text for a person (default), json for a script")


def _add_result_commands(commands: Any) -> None:
    """`launch` and `export`: what a found config becomes in the user's own job."""
    launch = commands.add_parser(
        "launch", help="run your own command as the best config's trial ran: its preloads, "
        "OMP/KMP variables, threads, cores and numactl",
        epilog="example: tuner launch tuner-runs/best/cpu_train.yaml -- python train.py")
    launch.add_argument("config", type=Path, help="best-config file (tuner-runs/best/STUDY.yaml)")
    launch.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="the command to run, after --")

    export = commands.add_parser("export", help="print the best config for a launcher or "
                                 "framework of your own",
                                 epilog="example: tuner export tuner-runs/best/cpu_train.yaml "
                                 "--to hf")
    export.add_argument("config", type=Path, help="best-config file (tuner-runs/best/STUDY.yaml)")
    export.add_argument("--to", choices=("env", "shell", "run_cpu", "hf", "lightning"),
                        default="shell", help="env: KEY=VALUE lines; shell: lines to source; "
                        "run_cpu: a torch.backends.xeon.run_cpu command line; hf: "
                        "TrainingArguments fields; lightning: Trainer and DataLoader arguments")


def _add_locations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///WORKDIR/optuna.db)")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TUNER_WORKDIR",
                                                                             "tuner-runs")),
                        help="folder for the default stores and best configs (default: tuner-runs)")


def _add_cluster(parser: argparse.ArgumentParser) -> None:
    """Where trials run and where they are recorded: the flags of a team's cluster."""
    parser.add_argument("--tracking-uri", help="MLflow tracking URI, e.g. http://HOST:5000 "
                        "(default: sqlite:///WORKDIR/mlflow.db)")
    parser.add_argument("--ray-address", help="existing Ray cluster, e.g. HOST:6379 or auto "
                        "(default: start a local Ray)")
    parser.add_argument("--runtime-env", metavar="FILE|JSON", help="Ray runtime_env for the "
                        "trials (YAML/JSON file or inline JSON): how worker nodes get code they "
                        "lack, e.g. '{\"working_dir\": \"examples\"}' (see docs/cluster.md)")


def _study_name(text: str) -> str:
    from tuner.driver.space.fields import study_name_problem

    problem = study_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _positive(text: str, convert: Callable[[str], Any], what: str) -> Any:
    """`text` as a positive finite `convert` (int, float), or one line naming `what`."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return int(_positive(text, int, "a positive integer"))


def _positive_float(text: str) -> float:
    return float(_positive(text, float, "a positive number of seconds"))
