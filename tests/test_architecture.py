"""The shape of the code, kept: which of the three places may import what, and small modules.

Driver code (`tuner.driver`) never imports torch: it runs where no GPU stack is installed.
Node code (`tuner.node`) imports neither torch nor Optuna nor MLflow: it sits beside a timed
process. Trial-process code (`tuner.worker`) never imports Optuna, MLflow or Ray: it sees only
plain data. Shared code (the rest of `tuner`) imports none of the three places' libraries at
module level, and no place's package. See docs/architecture.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tuner"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

FORBIDDEN = {  # place -> (third-party roots, tuner places) it must not import, anywhere
    "driver": ({"torch", "torchvision", "torchao", "intel_extension_for_pytorch"}, {"worker"}),
    "node": ({"torch", "torchvision", "optuna", "mlflow"}, {"driver", "worker"}),
    "worker": ({"optuna", "mlflow", "ray"}, {"driver", "node"}),
    "shared": ({"optuna", "mlflow", "ray"}, {"driver", "node", "worker"}),
}


def _place(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first if first in ("driver", "node", "worker") else "shared"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in the tree."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno, id(node) in top_level))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_place_imports_only_what_it_may(path: Path) -> None:
    place = _place(path)
    libraries, places = FORBIDDEN[place]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    broken = []
    for module, line, top in _imports(tree):
        root = module.split(".")[0]
        parts = module.split(".")
        if root in libraries:
            broken.append(f"line {line}: {place} code imports {module}")
        public_api = not top and (path, module) in (
            (PACKAGE / "__init__.py", "tuner.worker.apply"),  # `from tuner import Tuned`
            (PACKAGE / "__main__.py", "tuner.driver.cli"))  # `python -m tuner`
        if root == "tuner" and len(parts) > 1 and parts[1] in places and not public_api:
            broken.append(f"line {line}: {place} code imports {module}")
        if place == "shared" and top and root in ("torch", "torchvision") \
                and path.relative_to(PACKAGE).parts[0] != "workloads":
            broken.append(f"line {line}: shared code imports {module} at module level (the "
                          "driver imports shared modules; import it inside the function)")
    assert not broken, "\n".join(broken)


def test_the_driver_and_the_node_load_without_torch() -> None:
    """Transitively, too: importing every driver and node module pulls in no torch, and the
    node no Optuna or MLflow either."""
    def dotted(path: Path) -> str:
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    for place, banned in (("driver", ("torch",)), ("node", ("torch", "optuna", "mlflow"))):
        names = [dotted(path) for path in _modules() if _place(path) == place]
        code = (f"import sys\nfor name in {names!r}:\n    __import__(name)\n"
                f"print(sorted(m for m in {banned!r} if m in sys.modules))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "[]", f"{place} modules load {done.stdout.strip()}"


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines "
                                    f"(at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)


def test_the_contract_sees_a_violation(tmp_path: Path) -> None:
    """The AST walk finds an import inside a function, not only at the top."""
    tree = ast.parse("def f():\n    import torch\n")
    assert [(m, top) for m, _, top in _imports(tree)] == [("torch", False)]


def test_what_the_driver_keeps_of_a_trial_is_declared_in_the_contract() -> None:
    from tuner.driver.search.results import INFO_KEPT
    from tuner.trial import TrialInfo

    assert set(INFO_KEPT) <= set(TrialInfo.__annotations__)


def test_validate_loads_none_of_the_heavy_libraries() -> None:
    """`tuner validate` answers in a blink: no Optuna, Ray, MLflow or torch is imported."""
    space = PACKAGE.parent / "search_spaces" / "quick_train.yaml"
    code = ("import sys\nfrom tuner.driver.cli import main\n"
            f"assert main(['validate', {str(space)!r}]) == 0\n"
            "print(sorted(m for m in ('optuna', 'ray', 'mlflow', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
