"""The shipped scheduling and cluster examples call `tuner` with flags that exist, and their
YAML parses: an example that no longer matches the CLI would fail a user's first night."""

from __future__ import annotations

import argparse
import re
import shlex

import yaml
from conftest import ROOT

from tuner.driver.arguments import parser as _parser

NIGHTLY = ROOT / "examples" / "nightly"
CLUSTER = ROOT / "examples" / "cluster"


def _parses(argv: list[str], command: str = "nightly") -> argparse.Namespace:
    args = _parser().parse_args(argv)
    assert args.command == command and args.space.endswith(".yaml")
    assert (ROOT / args.space).is_file(), args.space
    return args


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


def test_cluster_examples_use_real_flags_and_keep_token_auth_on(monkeypatch) -> None:
    raycluster = yaml.safe_load((CLUSTER / "raycluster.yaml").read_text())
    assert raycluster["kind"] == "RayCluster"
    assert raycluster["spec"]["authOptions"]["mode"] == "token"
    secret = raycluster["spec"]["authOptions"]["secretName"]
    job = yaml.safe_load((CLUSTER / "tuner-search-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = _parses(container["args"], command="search")
    assert args.ray_address == f"{raycluster['metadata']['name']}-head-svc:6379"
    env = {item["name"]: item for item in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == secret
    assert ":" not in args.storage.split("@")[0].removeprefix("postgresql://")  # no password
    cronjob = yaml.safe_load((NIGHTLY / "kubernetes-cronjob.yaml").read_text())
    nightly = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert {item["name"] for item in nightly["env"]} >= {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
    monkeypatch.chdir(ROOT)  # the runtime_env's paths are the driver's, from the repository
    from tuner.driver.cluster import load_runtime_env

    runtime_env = load_runtime_env(str(CLUSTER / "runtime_env.yaml"))
    assert (ROOT / runtime_env["working_dir"] / "my_workload.py").is_file()


def test_the_adapted_scripts_diff_in_the_docs_is_the_real_one() -> None:
    """docs/your-job.md shows how an ordinary script is made tunable: every changed line of
    code it shows is the real change between the two example files, and it shows them all."""
    import ast
    import difflib

    def code(name: str) -> list[str]:
        text = (ROOT / "examples" / "jobs" / name).read_text(encoding="utf-8")
        docstring_end = ast.parse(text).body[0].end_lineno or 0  # the module docstring
        return text.splitlines()[docstring_end:]

    changed = [line for line in difflib.unified_diff(code("plain_script.py"),
                                                      code("tuned_script.py"), lineterm="")
               if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()]
    docs = (ROOT / "docs" / "your-job.md").read_text(encoding="utf-8")
    shown = docs.split("```diff\n", 1)[1].split("```", 1)[0].splitlines()
    shown = [line for line in shown if line[:1] in "+-" and line[1:].strip()]
    assert shown == changed
    added = [line for line in changed if line.startswith("+")]
    assert (len(added), len(changed) - len(added)) == (12, 6)  # as README.md says


def test_the_reference_holds_every_knob_and_field_as_the_code_has_them() -> None:
    """docs/reference.md's knob and field tables are what `tuner knobs --format markdown` and
    the schema print now: a knob or a default changed in the code is changed there too."""
    from tuner.driver.knob_table import knob_markdown
    from tuner.driver.space.schema import fields_markdown

    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert knob_markdown() in reference, "paste: tuner knobs --format markdown"
    assert fields_markdown() in reference
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("search", "nightly", "best", "log", "studies", "validate", "knobs",
                    "schema", "launch", "export", "doctor"):
        assert f"`tuner {command}" in reference, command
    assert readme.index("## The two commands") < readme.index("## Quickstart")
