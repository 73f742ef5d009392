"""Command line: `tuner search`, `nightly`, `best`, `log`, `studies`, `validate`, `doctor`,
`launch`, `export`.

Bad input prints one line naming the file or flag, the field and the fix, exits with code 2,
and creates nothing: every check runs before any storage, MLflow store or Ray is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from typing import Any

from tuner.driver import arguments
from tuner.errors import RecordsIncomplete, SearchAborted, UserError, one_line


def _command_line(argv: list[str]) -> str:
    """The command as typed, a password in any URL masked: an artifact of the search's run."""
    from tuner.driver.stores import redact

    def masked(arg: str) -> str:
        flag, equals, value = arg.partition("=")
        if equals and "://" in value and flag.startswith("--"):
            return f"{flag}={redact(value)}"
        return redact(arg) if "://" in arg else arg

    return shlex.join(["tuner", *map(masked, argv)])


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cmd_validate(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    trusted = ":" in space.workload.name or bool(space.workload.job)  # code the tuner will run
    if args.print_config:
        from tuner.driver.space.resolved import resolved, resolved_yaml

        if args.format == "json":
            _print_json(resolved(space))
        else:
            print(resolved_yaml(space), end="")
        return 0
    if args.format == "json":
        _print_json({"space": args.space, "ok": True, "study": space.study,
                     "workload": space.workload.name, "configs": space.size(),
                     "knobs": {name: knob.describe() for name, knob in space.knobs.items()},
                     "trials": space.budget.trials, "timeout_s": space.budget.timeout_s,
                     "objectives": list(space.objectives), "runs_your_code": trusted})
        return 0
    knobs = ", ".join(f"{name} {knob.describe()}" for name, knob in space.knobs.items())
    print(f"{args.space}: ok: study {space.study}, workload {space.workload.name}, "
          f"{space.size()} configs ({knobs}); budget {space.budget.describe()}; "
          f"objective {' and '.join(space.objectives)}; prices "
          f"{space.cost.describe(space.devices())}")
    if trusted:
        what = {"script": "runs"}.get(space.workload.job, "imports and calls")
        print(f"note: workload {space.workload.name} is your code: every trial process {what} "
              "it, on every node; run spaces only from people you trust")
    return 0


def _searched(args: argparse.Namespace, space: Any, where: Any, outcome: Any, code: int,
              experiment: str, verdict: list[str] | None = None) -> int:
    """The end of `search` and `nightly`: where to review, and the machine-readable result."""
    from tuner.driver import outputs

    if outcome.report_path is not None:
        print(f"report: {outcome.report_path}")
    review = outputs.review_lines(where.tracking_uri, experiment, outcome, space.objective)
    for line in review:
        print(line)
    if args.result_json is not None:
        outputs.write_result_json(args.result_json, outputs.result_data(
            outcome, space, code, review[0], verdict))
        print(f"result: {args.result_json}")
    warning = outputs.append_step_summary(outcome, space, verdict)
    if warning:
        print(warning)
    return code


def _cmd_nightly(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    from tuner.driver.cluster import load_runtime_env
    from tuner.driver.executors.ray import RayExecutor
    from tuner.driver.nightly import Nightly, parse_date
    from tuner.driver.outputs import check_result_path
    from tuner.driver.search import Search
    from tuner.driver.stores import locations

    runtime_env = load_runtime_env(args.runtime_env)
    check_result_path(args.result_json)
    date = parse_date(args.date)
    where = locations(space, args.workdir, args.storage, args.tracking_uri)
    night = Nightly(space, date)
    outcome = Search(space, where, RayExecutor(args.ray_address, runtime_env),
                     study_name=night.study_name, trials=args.trials, timeout_s=args.timeout,
                     experiment=space.study, hooks=night, start_tags=night.start_tags,
                     run_name=night.run_name, command_line=_command_line(args.argv),
                     verbosity=args.verbosity).run()
    print()
    print(outcome.table)
    verdict = night.judge(outcome)
    print()
    for line in verdict.lines:
        print(line)
    if outcome.best_path is not None:
        print(f"best config tonight: {outcome.best_path}")
    code = verdict.exit_code or (RecordsIncomplete.exit_code if outcome.records_missing else 0)
    _searched(args, space, where, outcome, code, space.study, verdict.lines)
    if outcome.records_missing:
        print(f"tuner: error: {outcome.records_missing}", file=sys.stderr)
    if verdict.exit_code:  # the one line a scheduler's mail or a CI log shows
        print(f"tuner: {verdict.lines[0]}", file=sys.stderr)
    return code


def _cmd_search(args: argparse.Namespace) -> int:
    from tuner.driver.space import load_space

    space = load_space(args.space, args.set)
    from tuner.driver.cluster import load_runtime_env
    from tuner.driver.executors.ray import RayExecutor
    from tuner.driver.outputs import check_result_path
    from tuner.driver.search import Search
    from tuner.driver.stores import locations

    runtime_env = load_runtime_env(args.runtime_env)
    check_result_path(args.result_json)
    where = locations(space, args.workdir, args.storage, args.tracking_uri)
    outcome = Search(space, where, RayExecutor(args.ray_address, runtime_env),
                     study_name=args.study, trials=args.trials, timeout_s=args.timeout,
                     command_line=_command_line(args.argv), verbosity=args.verbosity).run()
    print()
    print(outcome.table)
    if outcome.best_path is not None:
        print(f"best config: {outcome.best_path}")
    code = RecordsIncomplete.exit_code if outcome.records_missing else 0
    _searched(args, space, where, outcome, code, args.study or space.study)
    if outcome.records_missing:
        print(f"tuner: error: {outcome.records_missing}", file=sys.stderr)
    return code


def _cmd_best(args: argparse.Namespace) -> int:
    from tuner.driver import browse
    from tuner.driver import report as rp

    storage = browse.storage_url(args.storage, args.workdir)
    stored = browse.StoredStudy(browse.load_study(storage, args.study))
    best = stored.best()
    if args.format == "json":
        _print_json(stored.data(args.top))
        return 0 if best else 1
    print(stored.table(args.top))
    if best is None:
        print("no feasible measured trial yet")
        return 1
    print()
    print(rp.best_config_yaml(best), end="")
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    from tuner.driver import browse

    storage = browse.storage_url(args.storage, args.workdir)
    _, text = browse.StoredStudy(browse.load_study(storage, args.study)).log(args.trial)
    print(text)
    return 0


def _cmd_studies(args: argparse.Namespace) -> int:
    from tuner.driver import browse

    found = browse.studies(browse.storage_url(args.storage, args.workdir))
    if args.format == "json":
        _print_json(found)
    else:
        print(browse.studies_table(found))
    return 0


def _cmd_knobs(args: argparse.Namespace) -> int:
    from tuner.driver import knob_table

    if args.format == "json":
        _print_json(knob_table.knob_rows())
    else:
        print(knob_table.knob_markdown() if args.format == "markdown"
              else knob_table.knob_text(), end="" if args.format == "markdown" else "\n")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from tuner.driver.space.schema import schema

    _print_json(schema())
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tuner.driver.doctor import facts, report

    found = facts()
    if args.format == "json":
        _print_json(found)
    else:
        print(report(found))
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
            "log": _cmd_log, "studies": _cmd_studies, "validate": _cmd_validate,
            "doctor": _cmd_doctor, "schema": _cmd_schema, "knobs": _cmd_knobs,
            "launch": _cmd_launch, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    _line_buffered()
    argv = sys.argv[1:] if argv is None else argv
    args = arguments.parser().parse_args(argv)
    args.argv = argv
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
