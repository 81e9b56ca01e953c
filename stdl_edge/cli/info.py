"""``stdl-edge info``: versions, devices, exporters, accelerator."""

from __future__ import annotations

import importlib.metadata
import platform

from rich.table import Table

from .app import app, console


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@app.command()
def info() -> None:
    """Show versions, which devices and exporters can run here (and why not), and the GPU."""
    import torch

    import stdl_edge
    import stdl_edge.devices  # noqa: F401  (registers devices)
    import stdl_edge.exporters  # noqa: F401  (registers exporters)
    from stdl_edge.registry import DEVICES, EXPORTERS

    versions = Table(title="stdl-edge " + stdl_edge.__version__, show_header=True)
    versions.add_column("package")
    versions.add_column("version")
    versions.add_row("python", platform.python_version())
    for dist in ("torch", "numpy", "onnx", "onnxruntime", "onnxscript", "lava-nc", "lava-dl", "h5py", "tonic"):
        versions.add_row(dist, _version(dist))
    console.print(versions)

    if torch.cuda.is_available():
        gpu = f"CUDA: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} device(s))"
    else:
        gpu = "CUDA: not available (training and inference run on the CPU)"
    console.print(gpu)

    for title, registry in (("devices", DEVICES), ("exporters", EXPORTERS)):
        table = Table(title=title)
        table.add_column("name")
        table.add_column("available")
        table.add_column("what")
        for entry in registry.entries():
            why = entry.why_unavailable()
            table.add_row(entry.name, "[green]yes[/]" if why is None else f"[red]no[/]: {why}", entry.summary)
        console.print(table)
