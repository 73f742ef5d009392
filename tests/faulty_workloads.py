"""User workloads (`faulty_workloads:NAME`) that fail for real, in the trial process."""

from __future__ import annotations

import os
import time
from typing import Any

from tuner.workloads.vision import TinyCNN


class _Raises(TinyCNN):
    def build_model(self) -> Any:
        raise RuntimeError("the model cannot be built: deliberate test failure")


class _Hangs(TinyCNN):
    def build_model(self) -> Any:
        time.sleep(3600)


class _Aborts(TinyCNN):
    def build_model(self) -> Any:
        os.abort()


class _TooBig(TinyCNN):
    def build_model(self) -> Any:
        import torch

        torch.empty(2**46, dtype=torch.uint8)  # 64 TiB: the allocator refuses


def too_big(**options: Any) -> TinyCNN:
    return _TooBig(**options)


def raises(**options: Any) -> TinyCNN:
    return _Raises(**options)


def hangs(**options: Any) -> TinyCNN:
    return _Hangs(**options)


def aborts(**options: Any) -> TinyCNN:
    return _Aborts(**options)
