"""``stdl-edge verify RUN --devices torch,onnxruntime,loihi-sim``: do all devices agree?

Each device opens its artifact from the run folder (torch: RUN; onnxruntime:
RUN/export/onnx; loihi-sim and lava: RUN/export/netx/model.net; missing exports are
written first), runs the test split of the run's data set with ``record=True``, and
:class:`stdl_edge.devices.compare.Comparison` compares every step of every layer the
devices share. torch vs onnxruntime and loihi-sim vs lava must be identical (exit 1
otherwise); float vs fixed point reports agreement and accuracy only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import typer
from rich.progress import Progress
from rich.table import Table

from .app import app, console
from .export import write_export


def dataset_of_run(run: Path) -> str | None:
    """The data set a run was trained on (``model.json`` ``stdl.train.dataset``), if recorded."""
    from stdl_edge.io import read_json

    record = read_json(run / "model.json")
    for path in (("stdl", "train", "dataset"), ("train", "dataset"), ("dataset",)):
        node: Any = record
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return node
    return None


def test_batches(name: str, stream, input_shape: tuple[int, ...], samples: int, batch: int,
                 seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(frames (T, B, C, H, W) float32, labels (B,) | None)`` of the first ``samples`` test samples.

    ``name = "random"`` gives seeded random binary frames (10 % active pixels) without labels.
    """
    if name == "random":
        rng = np.random.default_rng(seed)
        for start in range(0, samples, batch):
            b = min(batch, samples - start)
            yield (rng.random((stream.num_steps, b, *input_shape)) < 0.1).astype(np.float32), None
        return
    import torch

    from stdl_edge.data import load_dataset, materialize

    ds = load_dataset(name, "test", num_steps=stream.num_steps, dt_us=stream.dt_us, bin_mode=stream.bin_mode)
    frame_shape = tuple(ds.frames.shape[2:])
    if frame_shape != tuple(input_shape):
        raise ValueError(f"data set {name!r} gives frames {frame_shape} but the model takes {tuple(input_shape)}; "
                         "pass the data set the run was trained on with --dataset")
    n = min(samples, len(ds.labels))
    for frames, labels in materialize(ds).batches(batch, order=torch.arange(n)):
        yield frames.numpy(), labels.numpy()


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f} %"


def run_verify(run: Path, devices: list[str], samples: int = 64, dataset: str | None = None, batch: int = 16,
               options: dict[str, dict[str, Any]] | None = None):
    """Open ``devices`` on ``run`` (exporting what is missing) and compare them; returns the Comparison."""
    import stdl_edge.devices  # noqa: F401  (registers the devices)
    from stdl_edge.devices import open_device
    from stdl_edge.devices.compare import Comparison, resolve_artifact

    if not (run / "model.json").exists():
        raise FileNotFoundError(f"{run} is not a run folder (no model.json); train one with `stdl-edge train`")
    if len(devices) < 2:
        raise ValueError(f"--devices {','.join(devices)}: give at least two devices to compare")
    if samples < 1 or batch < 1:
        raise ValueError(f"--samples {samples} and --batch {batch} must be >= 1")
    opened = {}
    for name in devices:
        artifact = resolve_artifact(run, name, export=write_export,
                                    notify=lambda msg: console.print(f"[yellow]{msg}[/]"))
        opened[name] = open_device(name, artifact, record=True, **(options or {}).get(name, {}))
    first = next(iter(opened.values()))
    name = dataset or dataset_of_run(run)
    if name is None:
        raise ValueError(f"{run}/model.json does not name its data set; pass --dataset NAME (or --dataset random)")
    comparison = Comparison(opened)
    total = samples if name == "random" else None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"verifying on {name}", total=total)
        for frames, labels in test_batches(name, first.stream, first.input_shape, samples, batch):
            comparison.add_batch(frames, labels)
            progress.update(task, advance=frames.shape[1])
    return comparison


def print_report(comparison) -> None:
    acc = Table(title=f"devices ({comparison.samples} samples)")
    for col in ("device", "latency (steps)", "accuracy"):
        acc.add_column(col)
    for name, dev in comparison.devices.items():
        acc.add_row(name, str(dev.latency), _fmt(comparison.accuracy(name)))
    console.print(acc)
    pairs = Table(title="pairwise agreement")
    for col in ("pair", "expected", "values equal", "predictions equal", "result"):
        pairs.add_column(col)
    for pair in comparison.pairs.values():
        result = ("[green]ok[/]" if pair.ok else "[red]FAIL[/]") if pair.identity else "info"
        pairs.add_row(f"{pair.a} / {pair.b}", "identical" if pair.identity else "close",
                      _fmt(pair.value_agreement) if pair.traced else "n/a", _fmt(pair.agreement), result)
    console.print(pairs)
    for pair in comparison.pairs.values():
        what = (f"{len(pair.keys)} recorded keys, {pair.compared:,} values compared step by step"
                if pair.traced else "predictions only (the latencies differ)")
        console.print(f"{pair.a} vs {pair.b}: {what}", highlight=False)
        if pair.ties:
            console.print(f"[yellow]{pair.a} vs {pair.b}: {len(pair.tied_samples)} sample(s) reached a float "
                          f"threshold tie (voltages equal within tolerance, one device fires): left out "
                          f"from that step on[/]", highlight=False)
            for m in pair.ties[:5]:
                console.print(f"  tie: layer {m.key} step {m.step} sample {m.sample}: {m.count} spike(s), "
                              f"|v_a - v_b| = {m.max_abs:.2g}", highlight=False, soft_wrap=True)
        if pair.identity and not pair.ok:
            console.print(f"[red]{pair.a} vs {pair.b}: MISMATCH in {len(pair.mismatched_samples)} sample(s); "
                          f"first differences:[/]", highlight=False)
            for m in pair.mismatches:
                console.print(f"  {m.describe()}", highlight=False, soft_wrap=True)


@app.command()
def verify(
    run: Path = typer.Argument(..., help="run folder"),
    devices: str = typer.Option("torch,onnxruntime", "--devices",
                                help="comma-separated devices, e.g. torch,onnxruntime,loihi-sim,lava"),
    samples: int = typer.Option(64, "--samples", help="test samples to run"),
    dataset: str = typer.Option(None, "--dataset",
                                help="data set (default: the run's); 'random' = random frames, no labels"),
    batch: int = typer.Option(16, "--batch", help="samples per batch"),
) -> None:
    """Run the test split through every device and compare spikes, states and predictions."""
    names = [d.strip() for d in devices.split(",") if d.strip()]
    comparison = run_verify(run, names, samples=samples, dataset=dataset, batch=batch)
    print_report(comparison)
    if not comparison.ok:
        console.print("[bold red]verify failed:[/] devices that must be identical differ")
        raise typer.Exit(1)
    console.print("[bold green]verify passed[/]")
