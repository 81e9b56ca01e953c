"""``stdl-edge bench RUN|ARTIFACT --devices torch,onnxruntime``: per-step latency and throughput.

Argument handling and the table; the measurement is :func:`stdl_edge.devices.bench.bench_devices`
(median step latency at batch 1, throughput at ``--batch``, on random 10 % event frames).
"""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, console


@app.command()
def bench(
    target: Path = typer.Argument(..., help="run folder, or an artifact (.onnx, export folder, .net)"),
    devices: str = typer.Option("torch,onnxruntime", "--devices", help="comma-separated devices"),
    steps: int = typer.Option(200, "--steps", help="timed steps at batch 1 (a quarter of them at --batch)"),
    batch: int = typer.Option(32, "--batch", help="batch size of the throughput measurement"),
) -> None:
    """Median per-step latency (batch 1) and throughput (batch 32) of each device."""
    from rich.table import Table

    from stdl_edge.api import export
    from stdl_edge.devices.bench import bench_devices

    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise ValueError("--devices is empty; name at least one device")
    with console.status("timing ..."):
        rows = bench_devices(target, names, steps=steps, batch=batch,
                             export=export, notify=lambda msg: console.print(f"[yellow]{msg}[/]"))
    table = Table(title=f"inference speed of {target}")
    for col in ("device", "latency b=1 (ms, median)", "p90 (ms)", "CPU time b=1 (ms)",
                f"throughput b={batch} (sample-steps/s)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["device"], f"{r['latency_ms_median']:.3f}", f"{r['latency_ms_p90']:.3f}",
                      f"{r['latency_cpu_ms_median']:.3f}", f"{r['throughput_sample_steps_per_s']:,.0f}")
    console.print(table)
