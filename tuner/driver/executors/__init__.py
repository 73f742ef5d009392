"""Executors: where trials run. `base.Executor` is the interface; `ray.RayExecutor` the default."""
