"""Knowledge across machines: a new study starts from the best configs of other studies of the
same workload in the same storage, the most similar hardware and libraries first.

A config that won on a machine with the same CPU features, GPU and torch is likely good here;
one from a different machine kind is a weaker hint. Similarity is read from each study's
baseline trial (what its trial process reported: device, CPU features, GPU, library versions),
so it compares the machines the trials ran on, not the drivers'. The source is named in the
output; what is queued is measured here like any other trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuner.driver import ranking as rk
from tuner.driver import study as st

TRANSFER = "transfer"  # the trial role of a config carried over from another study
MIN_SIMILARITY = 0.5  # below this, another machine's winners are no hint worth a trial


@dataclass(frozen=True)
class Source:
    study: str
    similarity: float  # 0..1
    why: str  # what matched and what did not, in words
    configs: list[dict[str, Any]]  # its best configs, best first


def similarity(here: dict[str, Any], there: dict[str, Any]) -> tuple[float, str]:
    """How alike two baseline trials' machines are (0..1), and in words: the device kind
    (weight 3), CPU features (3, as overlap), the GPU (2), torch's version (2: major.minor 1)."""
    score, said = 0.0, []

    def part(weight: float, match: float, what: str) -> None:
        nonlocal score
        score += weight * match
        said.append(f"{'same' if match == 1 else 'other' if match == 0 else 'similar'} {what}")

    part(3, float(here.get("device", "cpu") == there.get("device", "cpu")), "device")
    mine, theirs = set(here.get("cpu_features") or ()), set(there.get("cpu_features") or ())
    part(3, len(mine & theirs) / len(mine | theirs) if mine | theirs else 1.0, "CPU features")
    part(2, float(here.get("gpu", "") == there.get("gpu", "")), "GPU")
    torch_here = str(here.get("versions", {}).get("torch", ""))
    torch_there = str(there.get("versions", {}).get("torch", ""))
    same_minor = torch_here.split(".")[:2] == torch_there.split(".")[:2]
    part(2, 1.0 if torch_here == torch_there else 0.5 if same_minor else 0.0, "torch")
    return score / 10, ", ".join(said)


def sources(storage: Any, study_name: str, workload: dict[str, Any],
            here: dict[str, Any]) -> list[Source]:
    """Other studies of this workload with a ranked config, most similar first."""
    import optuna

    found = []
    for summary in optuna.get_all_study_summaries(storage=storage, include_best_trial=False):
        name = summary.study_name
        if name == study_name or summary.user_attrs.get(st.WORKLOAD) != workload:
            continue
        rows = rk.rows(optuna.load_study(study_name=name, storage=storage))
        base = rk.baseline_row(rows)
        best = [row.knobs for row in rk.ranked(rows, summary.user_attrs.get(
            st.OBJECTIVE, "samples_per_sec")) if row.role != st.BASELINE]
        if base is None or not best:
            continue
        score, why = similarity(here, base.info)
        if score >= MIN_SIMILARITY:
            found.append(Source(name, score, why, best))
    return sorted(found, key=lambda source: -source.similarity)


def transfer_configs(space: Any, found: list[Source], limit: int
                     ) -> list[tuple[dict[str, Any], str, Source]]:
    """Up to `limit` configs from the most similar sources that fit this space and are not
    its baseline: (searched config, role, where it came from)."""
    picked: list[tuple[dict[str, Any], str, Source]] = []
    baseline = space.searched(space.full_config({}))
    for source in found:
        for knobs in source.configs:
            config = space.searched(knobs)
            fits = all(space.knobs[name].contains(value) for name, value in config.items())
            if fits and config != baseline and all(config != seen for seen, _, _ in picked):
                picked.append((config, TRANSFER, source))
            if len(picked) >= limit:
                return picked
    return picked
