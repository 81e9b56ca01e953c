"""Inference speed of devices: per-step latency at batch 1 and throughput at a larger batch.

Latency is the median wall-clock time of one ``step`` at batch 1 (and the median CPU
time of the calling thread, which a busy machine does not inflate); throughput is
``batch / median step time`` at ``batch``, in sample-steps per second. Frames are random
binary event frames (10 % active pixels) of the artifact's input shape
(:func:`~stdl_edge.devices.compare.time_steps`)::

    from stdl_edge.devices.bench import bench_devices

    for row in bench_devices("runs/demo", ["torch", "onnxruntime"]):
        print(row["device"], row["latency_ms_median"], row["throughput_sample_steps_per_s"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from stdl_edge.artifact import ExportFn

from .base import open_device
from .compare import time_steps


def bench_devices(target: str | Path, devices: list[str], steps: int = 200, batch: int = 32, warmup: int = 20,
                  options: dict[str, dict[str, Any]] | None = None, *,
                  export: ExportFn | None = None, notify: Callable[[str], None] | None = None
                  ) -> list[dict[str, Any]]:
    """One row per device of ``target`` (a run folder, or an artifact every device can open).

    steps: timed steps at batch 1 (a quarter of them, at least 5, at ``batch``), after
    ``warmup`` untimed ones. options: per device, extra :func:`~stdl_edge.devices.open_device`
    options. export, notify: as :func:`~stdl_edge.devices.open_device` (a run folder's missing
    export is written by ``export``; ``notify(message)`` is told).
    Row keys: ``device``, ``artifact``, ``latency_ms_median``, ``latency_ms_p90``,
    ``latency_cpu_ms_median`` (ms per step at batch 1), ``batch``,
    ``throughput_sample_steps_per_s``, ``steps_timed`` (at batch 1 and at ``batch``).
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"--steps {steps} and --batch {batch} must be >= 1")
    rows = []
    for name in devices:
        dev = open_device(name, target, export=export, notify=notify, **(options or {}).get(name, {}))
        one = time_steps(dev, 1, steps, min(warmup, steps))
        many = time_steps(dev, batch, max(steps // 4, 5), min(max(warmup // 4, 2), steps))
        rows.append({
            "device": name,
            "artifact": str(dev.artifact),
            "latency_ms_median": float(np.median(one.wall) * 1e3),
            "latency_ms_p90": float(np.percentile(one.wall, 90) * 1e3),
            "latency_cpu_ms_median": float(np.median(one.cpu) * 1e3),
            "batch": batch,
            "throughput_sample_steps_per_s": float(batch / np.median(many.wall)),
            "steps_timed": [len(one.wall), len(many.wall)],
        })
    return rows
