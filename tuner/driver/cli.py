"""Command line: `tuner search`, `best`, `validate`, `nightly`, `doctor`, `launch`, `export`.

Bad input prints one line naming the file or flag, the field and the fix, exits with code 2,
and creates nothing: every check runs before any storage, MLflow store or Ray is touched.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from tuner import __version__
from tuner.errors import (
    REGRESSION_EXIT_CODE,
    USAGE_EXIT_CODE,
    RecordsIncomplete,
    SearchAborted,
    UserError,
    one_line,
)

EPILOG = "Review trials with: mlflow ui --backend-store-uri sqlite:///tuner-runs/mlflow.db"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the tuner."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {one_line(message)} "
                                   f"(see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuner", description=(
        "Search how a PyTorch job should run (batch size, workers, dtype, memory format, "
        "torch.compile, threads) with Optuna, Ray and MLflow."), epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser("search", help="run (or resume) a search over a space file")
    search.add_argument("--space", required=True, help="search-space YAML file")
    search.add_argument("--trials", type=_positive_int, help="total trials the study should hold "
                        "(default: the space's budget.trials)")
    search.add_argument("--timeout", type=_positive_float, metavar="S",
                        help="stop starting trials after S seconds (default: budget.timeout_s)")
    search.add_argument("--study", type=_study_name,
                        help="study name (default: the space's study)")
    _add_locations(search)
    _add_cluster(search)
    search.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the space, e.g. --set budget.trials=4")

    nightly = commands.add_parser(
        "nightly", help="tonight's search: warm-started from earlier nights, last night's "
        f"champion re-measured, exit {REGRESSION_EXIT_CODE} on a regression")
    nightly.add_argument("--space", required=True, help="search-space YAML file")
    nightly.add_argument("--date", help="the night, YYYY-MM-DD (default: today); a night already "
                         "run is not measured again, its verdict is given again")
    nightly.add_argument("--trials", type=_positive_int, help="trials tonight "
                         "(default: the space's budget.trials)")
    nightly.add_argument("--timeout", type=_positive_float, metavar="S",
                         help="stop starting trials after S seconds (default: budget.timeout_s)")
    _add_locations(nightly)
    _add_cluster(nightly)
    nightly.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a field of the space")

    best = commands.add_parser("best", help="show a study's top configs and its best config")
    best.add_argument("--study", required=True, type=_study_name, help="study name")
    _add_locations(best)
    best.add_argument("--top", type=_positive_int, default=10, help="rows in the table")

    commands.add_parser("doctor", help="what this machine has, and which knob choices it can run")

    _add_result_commands(commands)

    validate = commands.add_parser("validate", help="check a space file without running it")
    validate.add_argument("space", help="search-space YAML file")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _add_result_commands(commands: Any) -> None:
    """`launch` and `export`: what a found config becomes in the user's own job."""
    launch = commands.add_parser(
        "launch", help="run your own command as the best config's trial ran: its preloads, "
        "OMP/KMP variables, threads, cores and numactl")
    launch.add_argument("config", type=Path, help="best-config file (tuner-runs/best/STUDY.yaml)")
    launch.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="the command to run, after --")

    export = commands.add_parser("export", help="print the best config for a launcher or "
                                 "framework of your own")
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


def _review(tracking_uri: str, experiment: str) -> str:
    """Where to look at the search's MLflow records."""
    from tuner.driver.stores import redact

    if tracking_uri.startswith(("http:", "https:")):
        return f"review: open {redact(tracking_uri)} (experiment {experiment})"
    return f"review: mlflow ui --backend-store-uri {redact(tracking_uri)} (experiment {experiment})"


def _study_name(text: str) -> str:
    from tuner.driver.space.fields import study_name_problem

    problem = study_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _cmd_validate(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    knobs = ", ".join(f"{name} {knob.describe()}" for name, knob in space.knobs.items())
    print(f"{args.space}: ok: study {space.study}, workload {space.workload.name}, "
          f"{space.size()} configs ({knobs}); budget {space.budget.trials} trials / "
          f"{space.budget.timeout_s:g} s; objective {' and '.join(space.objectives)}; prices "
          f"{space.cost.describe(space.devices())}")
    if ":" in space.workload.name or space.workload.job:  # code the tuner will run
        what = {"script": "runs"}.get(space.workload.job, "imports and calls")
        print(f"note: workload {space.workload.name} is your code: every trial process {what} "
              "it, on every node; run spaces only from people you trust")
    return 0


def _cmd_nightly(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    from tuner.driver.cluster import load_runtime_env
    from tuner.driver.executors.ray import RayExecutor
    from tuner.driver.nightly import Nightly, parse_date
    from tuner.driver.search import Search
    from tuner.driver.stores import locations

    runtime_env = load_runtime_env(args.runtime_env)
    date = parse_date(args.date)
    where = locations(space, args.workdir, args.storage, args.tracking_uri)
    night = Nightly(space, date)
    outcome = Search(space, where, RayExecutor(args.ray_address, runtime_env),
                     study_name=night.study_name, trials=args.trials, timeout_s=args.timeout,
                     experiment=space.study, hooks=night, start_tags=night.start_tags,
                     run_name=night.run_name).run()
    print()
    print(outcome.table)
    verdict = night.judge(outcome)
    print()
    for line in verdict.lines:
        print(line)
    if outcome.best_path is not None:
        print(f"best config tonight: {outcome.best_path}")
    print(_review(where.tracking_uri, space.study))
    if outcome.records_missing:
        print(f"tuner: error: {outcome.records_missing}", file=sys.stderr)
    if verdict.exit_code:  # the one line a scheduler's mail or a CI log shows
        print(f"tuner: {verdict.lines[0]}", file=sys.stderr)
        return verdict.exit_code
    return RecordsIncomplete.exit_code if outcome.records_missing else 0


def _cmd_search(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    from tuner.driver.cluster import load_runtime_env
    from tuner.driver.executors.ray import RayExecutor
    from tuner.driver.search import Search
    from tuner.driver.stores import locations

    runtime_env = load_runtime_env(args.runtime_env)
    where = locations(space, args.workdir, args.storage, args.tracking_uri)
    outcome = Search(space, where, RayExecutor(args.ray_address, runtime_env),
                     study_name=args.study, trials=args.trials, timeout_s=args.timeout).run()
    print()
    print(outcome.table)
    if outcome.best_path is not None:
        print(f"best config: {outcome.best_path}")
    print(_review(where.tracking_uri, args.study or space.study))
    if outcome.records_missing:
        print(f"tuner: error: {outcome.records_missing}", file=sys.stderr)
        return RecordsIncomplete.exit_code
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    import optuna

    from tuner import metrics as mx
    from tuner.driver import ranking as rk
    from tuner.driver import report as rp
    from tuner.driver import study as st
    from tuner.trial import MeasureSettings

    storage = args.storage or f"sqlite:///{(args.workdir / 'optuna.db').resolve()}"
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise UserError(f"--storage: no study storage at {storage.removeprefix('sqlite:///')}; "
                        "run `tuner search` first or pass --storage/--workdir")
    from tuner.driver.stores import check_storage_url, preflight_database, redact

    check_storage_url(storage)
    preflight_database(storage, "--storage")
    _refuse_a_database_without_studies(storage)  # `best` reads: it must create no tables
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = optuna.get_all_study_names(storage=storage)
    if args.study not in names:
        raise UserError(f"--study: no study {args.study!r} in {redact(storage)}; "
                        f"studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=args.study, storage=storage)
    objective = study.user_attrs.get(st.OBJECTIVE, mx.SAMPLES_PER_SEC)
    objectives = tuple(study.user_attrs.get(st.OBJECTIVES, [objective]))
    rows = rk.rows(study)
    print(rp.format_table(rows, objective, top=args.top,
                          max_cv=study.user_attrs.get(st.MAX_CV, MeasureSettings.max_cv),
                          currency=study.user_attrs.get(st.CURRENCY, "USD"),
                          objectives=objectives))
    best = rp.best_config(rows, objective, args.study, objectives)
    if best is None:
        print("no feasible measured trial yet")
        return 1
    print()
    print(rp.best_config_yaml(best), end="")
    return 0


def _refuse_a_database_without_studies(storage: str) -> None:
    """A SQLite file that holds no Optuna study storage (MLflow's database, say) is refused
    before Optuna would add its tables to it; opened read-only to look."""
    import sqlite3

    if not storage.startswith("sqlite:///"):
        return
    path = Path(storage.removeprefix("sqlite:///"))
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise UserError(f"--storage: {path} is not a readable SQLite database ({error})") \
            from None
    if "studies" not in tables:
        raise UserError(f"--storage: {path} holds no Optuna study storage (no 'studies' "
                        "table); give the optuna.db a search wrote (tuner-runs/optuna.db)")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tuner.driver.doctor import report

    print(report())
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from tuner.node import launch as ln

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    if not job:
        raise UserError("launch: give the command to run after --, e.g. tuner launch "
                        "tuner-runs/best/cpu_train.yaml -- python train.py")
    half = ln.process_half(ln.read_config(args.config), dict(os.environ))
    if shutil.which(job[0]) is None:
        raise UserError(f"launch: cannot run {job[0]!r}: no such program on PATH")
    print(f"tuner launch: {ln.describe(half)}", file=sys.stderr)
    if half.cores is not None:
        os.sched_setaffinity(0, half.cores)  # kept by the command exec'd below
    argv = half.prefix + job
    try:
        os.execvpe(argv[0], argv, ln.launch_env(half, dict(os.environ), args.config))
    except OSError as error:
        raise UserError(f"launch: cannot run {argv[0]!r}: {error.strerror or error}") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from tuner.frameworks import FRAMEWORKS
    from tuner.frameworks import export_lines as framework_lines
    from tuner.node import launch as ln

    knobs = ln.read_config(args.config)
    if args.to in FRAMEWORKS:  # the in-process half in the framework's words
        print("\n".join(framework_lines(FRAMEWORKS[args.to](knobs))))
        return 0
    half = ln.process_half(knobs, dict(os.environ))
    if args.to == "run_cpu":
        command, caveats = ln.run_cpu_command(half)
        lines = [shlex.join(command) + " YOUR_SCRIPT.py"] + [f"# {c}" for c in caveats]
    else:
        lines = ln.export_lines(half, args.to)
    lines += [f"# {note}" for note in half.notes]
    inside = " ".join(f"{k}={v}" for k, v in half.in_process().items())
    if inside:
        lines.append(f"# inside the job (its own code applies these): {inside}")
    print("\n".join(lines))
    return 0


COMMANDS = {"search": _cmd_search, "nightly": _cmd_nightly, "best": _cmd_best,
            "validate": _cmd_validate, "doctor": _cmd_doctor, "launch": _cmd_launch,
            "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    _line_buffered()
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"tuner: error: {one_line(str(error))}", file=sys.stderr)
        return error.exit_code
    except SearchAborted as error:
        print(f"tuner: search stopped: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("tuner: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _line_buffered() -> None:
    """Each line as it is written, also when stdout is a file or a pipe (cron, systemd, CI, a
    test reading the output): a search's progress must not arrive in one clump at its end."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except (ValueError, OSError):
                pass  # a stream that cannot be reconfigured (closed, replaced): left as it is


if __name__ == "__main__":
    sys.exit(main())
