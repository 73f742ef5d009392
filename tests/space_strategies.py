"""Hypothesis strategies for search-space documents: valid ones, broken ones, and plain junk.

Shared by tests/test_fuzz.py (in the suite) and benchmarks/fuzz_space.py (a longer run that
prints the outcome counts quoted in docs/reliability.md).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import strategies as hs

from tuner.driver.space import SECTIONS

VALID: dict[str, Any] = {
    "study": "fuzz",
    "workload": {"name": "tiny_cnn", "options": {"image_size": 16}},
    "objective": "samples_per_sec",
    "knobs": {"batch_size": [8, 16], "dtype": ["fp32", "bf16"], "threads": {"low": 1, "high": 2},
              "compile": ["none", "inductor"], "compile_mode": ["default", "max-autotune"]},
    "baseline": {"batch_size": 8, "dtype": "fp32", "threads": 1, "compile": "none"},
    "budget": {"trials": 4, "timeout_s": 60},
    "measure": {"warmup_steps": 1, "timed_steps": 3, "min_timed_steps": 2, "max_cv": 0.2},
    "trial": {"time_limit_s": 60, "max_concurrent": 1, "memory_mb": 2048, "heartbeat_s": 5},
    "cost": {"price_per_hour": 0.5, "currency": "EUR"},
    "guard": {"tolerance": 0.05, "mode": "relative", "steps": 2, "batch_size": 4},
    "sampler": {"name": "random", "seed": 1},
    "try_first": [{"batch_size": 16}],
}

# Scalars a YAML file can hold, with the edges that break naive code.
scalars = hs.one_of(
    hs.none(), hs.booleans(),
    hs.integers(), hs.integers(min_value=-(10**400), max_value=10**400),
    hs.floats(allow_nan=True, allow_infinity=True),
    hs.text(max_size=30),
    hs.sampled_from(["", " ", "auto", "default", "none", "fp16", "inductor", "\u00e9t\u00e9",
                     "\U0001f525", "a:b", "os:path", "..:x", "yes", "NaN", "-1", "1e999"]),
)
values = hs.recursive(
    scalars,
    lambda children: hs.one_of(
        hs.lists(children, max_size=4),
        hs.dictionaries(hs.one_of(hs.text(max_size=12), hs.integers(), hs.sampled_from(SECTIONS)),
                        children, max_size=4),
    ),
    max_leaves=12,
)
keys = hs.one_of(hs.sampled_from(SECTIONS), hs.text(max_size=16))


@hs.composite
def mutated_valid(draw: hs.DrawFn) -> dict[str, Any]:
    """The valid space with one to three fields replaced, removed, or added."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(hs.integers(min_value=1, max_value=3))):
        node: Any = doc
        path = []
        while isinstance(node, dict) and node and draw(hs.booleans()):
            key = draw(hs.sampled_from(sorted(node, key=str)))
            path.append(key)
            if not isinstance(node[key], dict):
                break
            node = node[key]
        if not isinstance(node, dict):
            continue
        action = draw(hs.sampled_from(["replace", "remove", "add"]))
        if action == "add" or not node:
            node[draw(keys)] = draw(values)
        else:
            key = draw(hs.sampled_from(sorted(node, key=str)))
            if action == "remove":
                del node[key]
            else:
                node[key] = draw(values)
    return doc


documents = hs.one_of(
    mutated_valid(),
    hs.dictionaries(keys, values, max_size=6),
    values,
)


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def billion_laughs(levels: int = 10) -> str:
    """Nine values, then each level nine aliases of the one below: 9**levels once expanded."""
    lines = ["    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"    a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return ("workload:\n  name: tiny_cnn\n  options:\n" + "\n".join(lines)
            + "\nknobs: {batch_size: [8]}\nbaseline: {batch_size: 8}\n")


# Texts no YAML dumper writes: syntax errors, tags, aliases, nesting, encodings.
NASTY_TEXTS = [
    billion_laughs(),
    "", "\n", "---\n...\n", "\ufeffknobs: {batch_size: [8]}\nworkload: tiny_cnn\n",
    "knobs: [1", "knobs:\n\t- 1\n", "workload: !!python/object/apply:os.system [ls]\n",
    "a: &a [*a]\nknobs: *a\nworkload: tiny_cnn\n",
    "workload: {name: tiny_cnn, options: &o {x: *o}}\nknobs: {batch_size: [8]}\n",
    ("x: &a [1,1,1,1,1,1,1,1,1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nz: &c [*b,*b,*b,*b,*b,*b,*b]\n"
    "workload: {name: tiny_cnn, options: {big: [*c,*c,*c,*c,*c,*c,*c,*c,*c]}}\n"
    "knobs: {batch_size: [8]}\n"),
    "[" * 5000 + "]" * 5000, "{a: " * 3000 + "1" + "}" * 3000,
    "knobs: {batch_size: [8]}\nworkload: tiny_cnn\nbudget: {trials: 1e999}\n",
    "knobs: {batch_size: [8]}\nworkload: tiny_cnn\nbudget: {timeout_s: " + "9" * 500 + "}\n",
    "knobs: {batch_size: [8]}\nworkload: tiny_cnn\nstudy: \"\\0\"\n",
    "knobs: {batch_size: [8]}\nworkload: tiny_cnn\nknobs: {dtype: [fp32]}\n",
    "? [a, b]\n: c\n", "knobs: {? [1]: 2}\n", "\x00\x01\x02", "key: 'unterminated\n",
    "knobs: {batch_size: [8, 8]}\nworkload: tiny_cnn\n",
    "knobs: {batch_size: {low: 64, high: 8}}\nworkload: tiny_cnn\n",
    "knobs: {threads: [0]}\nworkload: tiny_cnn\n",
    "knobs: {batch_size: [8]}\nworkload: 'this:x'\n",
    "knobs: {batch_size: [8]}\nworkload: 'no.such.module:f'\n",
]
