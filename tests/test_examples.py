"""The shipped scheduling examples call `tuner nightly` with flags that exist, and their YAML
parses: an example that no longer matches the CLI would fail a user's first night."""

from __future__ import annotations

import re
import shlex

import yaml
from conftest import ROOT

from tuner.cli import _parser

NIGHTLY = ROOT / "examples" / "nightly"


def _parses(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert args.command == "nightly" and args.space.endswith(".yaml")
    assert (ROOT / args.space).is_file(), args.space


def _command_after(text: str, marker: str, stop: str) -> list[str]:
    match = re.search(re.escape(marker) + r"(.*?)" + stop, text)
    assert match, marker
    return ["nightly", *shlex.split(match.group(1).replace("$TUNER_ARGS", ""))]


def test_scheduling_examples_use_real_flags() -> None:
    _parses(_command_after((NIGHTLY / "crontab").read_text(), "bin/tuner nightly", r" >>"))
    _parses(_command_after((NIGHTLY / "tuner-nightly.service").read_text(), "bin/tuner nightly",
                           r"\n"))
    workflow = yaml.safe_load((NIGHTLY / "github-actions.yml").read_text())
    steps = workflow["jobs"]["nightly"]["steps"]
    script = next(step["run"] for step in steps if "tuner nightly" in step.get("run", ""))
    _parses(_command_after(script, "tuner nightly", r" 2>"))
    cronjob = yaml.safe_load((NIGHTLY / "kubernetes-cronjob.yaml").read_text())
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    _parses(container["args"])
    timer = (NIGHTLY / "tuner-nightly.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
