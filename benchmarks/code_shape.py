"""The shape of a tree of code, as issue 19's closing note measured it: modules per package,
the largest modules, the longest functions, and how many pass the limits tests/test_architecture.py
keeps (400 lines a module, 60 a function).

    python benchmarks/code_shape.py [PACKAGE_FOLDER]     # default: tuner/
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path


def main(folder: Path) -> None:
    modules = sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)
    sizes = sorted(((len(path.read_text(encoding="utf-8").splitlines()),
                     str(path.relative_to(folder.parent))) for path in modules), reverse=True)
    functions = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((length, f"{path.relative_to(folder.parent)}:{node.name}"))
    functions.sort(reverse=True)
    per_package = collections.Counter(str(path.parent.relative_to(folder.parent))
                                      for path in modules)
    print(f"modules: {len(modules)}; per package: {dict(sorted(per_package.items()))}")
    print("largest modules: " + ", ".join(f"{name} {lines}" for lines, name in sizes[:3]))
    print("longest functions: " + ", ".join(f"{name} {n}" for n, name in functions[:3]))
    print(f"modules over 400 lines: {sum(1 for lines, _ in sizes if lines > 400)}; functions "
          f"over 60: {sum(1 for n, _ in functions if n > 60)}, over 40: "
          f"{sum(1 for n, _ in functions if n > 40)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "tuner"))
