"""The node's side of the dialogue with the driver, through Ray's key-value store: which node
runs a trial (so a node that hangs is noticed as that trial's), and the trial's phase for the
driver's progress line. Every call is best effort: outside Ray, or with the head unreachable,
the time limit still decides.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tuner import progress as pg


def _in_ray() -> bool:
    """Whether this process is a Ray worker's (Ray is loaded there); outside Ray the answers
    are empty, and importing Ray only to find that out would cost a second."""
    return "ray" in sys.modules


def node_id() -> str:
    if not _in_ray():
        return ""
    try:
        import ray

        # is_initialized first: asking for the context outside Ray would start a Ray
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray (tests call run_trial_process directly)
        return ""


def announce(placement_key: str) -> None:
    try:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(placement_key, node_id().encode(), overwrite=True)
    except Exception:  # noqa: BLE001 - without it, a hung node is found by the time limit
        pass


def gpu_ids() -> list[str]:
    """The GPUs Ray assigned to this task (what CUDA_VISIBLE_DEVICES holds in the trial)."""
    if not _in_ray():
        return []
    try:
        import ray

        if not ray.is_initialized():
            return []
        return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    except Exception:  # noqa: BLE001 - outside Ray (tests call run_trial_process directly)
        return []


def publisher(placement_key: str, progress_path: Path) -> Any:
    """Publish the trial's phase where the driver reads it (Ray's key-value store)."""
    def publish() -> None:
        progress = pg.read_progress(progress_path)
        if progress is None:
            return
        try:
            from ray.experimental import internal_kv

            internal_kv._internal_kv_put(pg.progress_key(placement_key),
                                         progress.describe(time.time()).encode(), overwrite=True)
        except Exception:  # noqa: BLE001 - a progress line is a convenience
            pass

    return publish


