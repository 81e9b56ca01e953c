"""``stdl-edge bench RUN|ARTIFACT --devices torch,onnxruntime``: per-step latency and throughput.

Latency is the median wall-clock time of one ``step`` at batch 1 (and the median CPU
time of the calling thread, which a busy machine does not inflate); throughput is
``batch / median step time`` at batch 32, in sample-steps per second. Frames are random
binary event frames (10 % active pixels) of the artifact's input shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from .app import app, console
from .export import write_export


def bench_devices(target: Path, devices: list[str], steps: int = 200, batch: int = 32, warmup: int = 20,
                  options: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per device: median step latency at batch 1 and throughput at ``batch``."""
    import stdl_edge.devices  # noqa: F401  (registers the devices)
    from stdl_edge.devices import open_device
    from stdl_edge.devices.compare import resolve_artifact, time_steps

    if steps < 1 or batch < 1:
        raise ValueError(f"--steps {steps} and --batch {batch} must be >= 1")
    rows = []
    for name in devices:
        artifact = resolve_artifact(target, name, export=write_export,
                                    notify=lambda msg: console.print(f"[yellow]{msg}[/]"))
        dev = open_device(name, artifact, **(options or {}).get(name, {}))
        one = time_steps(dev, 1, steps, min(warmup, steps))
        many = time_steps(dev, batch, max(steps // 4, 5), min(max(warmup // 4, 2), steps))
        rows.append({
            "device": name,
            "artifact": str(artifact),
            "latency_ms_median": float(np.median(one.wall) * 1e3),
            "latency_ms_p90": float(np.percentile(one.wall, 90) * 1e3),
            "latency_cpu_ms_median": float(np.median(one.cpu) * 1e3),
            "batch": batch,
            "throughput_sample_steps_per_s": float(batch / np.median(many.wall)),
            "steps_timed": [len(one.wall), len(many.wall)],
        })
    return rows


@app.command()
def bench(
    target: Path = typer.Argument(..., help="run folder, or an artifact (.onnx, export folder, .net)"),
    devices: str = typer.Option("torch,onnxruntime", "--devices", help="comma-separated devices"),
    steps: int = typer.Option(200, "--steps", help="timed steps at batch 1 (a quarter of them at --batch)"),
    batch: int = typer.Option(32, "--batch", help="batch size of the throughput measurement"),
) -> None:
    """Median per-step latency (batch 1) and throughput (batch 32) of each device."""
    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise ValueError("--devices is empty; name at least one device")
    with console.status("timing ..."):
        rows = bench_devices(target, names, steps=steps, batch=batch)
    table = Table(title=f"inference speed of {target}")
    for col in ("device", "latency b=1 (ms, median)", "p90 (ms)", "CPU time b=1 (ms)",
                f"throughput b={batch} (sample-steps/s)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["device"], f"{r['latency_ms_median']:.3f}", f"{r['latency_ms_p90']:.3f}",
                      f"{r['latency_cpu_ms_median']:.3f}", f"{r['throughput_sample_steps_per_s']:,.0f}")
    console.print(table)
