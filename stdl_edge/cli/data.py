"""``stdl-edge data``: build or load a bundled data set, summarise it and draw a preview.

The preview goes to ``--out`` (a ``.png`` file, or a folder for ``<name>-preview.png``), by
default into the data cache folder beside the cached events (:func:`stdl_edge.data.cache_dir`),
never into the working directory.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .app import app, console


def _list_datasets() -> None:
    from stdl_edge.data import DATASETS, cache_path, dataset_info

    table = Table(title="data sets")
    for col in ("name", "classes", "sensor", "samples", "duration", "binning", "cached"):
        table.add_column(col, no_wrap=True)
    for name in DATASETS:
        info = dataset_info(name)
        table.add_row(name, str(info.num_classes), str(info.sensor_size), str(info.num_samples),
                      f"{info.duration_us / 1000:g} ms", f"{info.num_steps} x {info.dt_us / 1000:g} ms",
                      "yes" if cache_path(name).exists() else "no")
    console.print(table)


def write_preview(ds, path: Path) -> Path:
    """Draw one example per class (rows) over its time steps (columns): ON red, OFF blue, both purple."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stdl_edge.io import atomic_path

    names = ds.info.class_names
    steps = ds.stream.num_steps
    fig, axes = plt.subplots(len(names), steps, figsize=(1.1 * steps + 1.2, 1.1 * len(names) + 0.6),
                             squeeze=False)
    for c, cname in enumerate(names):
        idx = np.flatnonzero(ds.labels == c)
        for k in range(steps):
            ax = axes[c, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if len(idx) == 0:
                continue
            off, on = ds.frames[idx[0], k, 0] > 0, ds.frames[idx[0], k, 1] > 0
            rgb = np.ones((*on.shape, 3))
            rgb[on] = (0.85, 0.1, 0.1)
            rgb[off] = (0.1, 0.2, 0.85)
            rgb[on & off] = (0.55, 0.1, 0.6)
            ax.imshow(rgb, interpolation="nearest")
            if c == 0:
                ax.set_title(f"{k * ds.stream.dt_us / 1000:g} ms", fontsize=7)
            if k == 0:
                ax.set_ylabel(cname, fontsize=8)
    fig.suptitle(f"{ds.info.name}: one sample per class, {steps} steps of {ds.stream.dt_us / 1000:g} ms "
                 f"(ON red, OFF blue)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _preview_path(out: Path | None, name: str, default_folder: Path) -> Path:
    """``--out`` itself (a file), ``<name>-preview.png`` inside it (a folder: exists or has no
    suffix), or inside ``default_folder`` without ``--out``."""
    if out is not None and out.suffix and not out.is_dir():
        return out
    return (out if out is not None else default_folder) / f"{name}-preview.png"


@app.command("data")
def data_command(
    name: str = typer.Argument(None, help="data set name (see --list)", show_default=False),
    out: Path = typer.Option(None, "--out", help="preview: a .png file, or a folder for <name>-preview.png "
                                                 "[default: the data cache folder]", show_default=False),
    seed: int = typer.Option(0, help="generation and split seed"),
    rebuild: bool = typer.Option(False, "--rebuild", help="regenerate even if cached"),
    limit: int = typer.Option(None, help="a class-balanced subset of about this many samples (quick look)"),
    list_: bool = typer.Option(False, "--list", help="list the data sets and exit"),
) -> None:
    """Build (first use) or load a data set, print its statistics and write a preview PNG."""
    import numpy as np

    from stdl_edge.data import DATASETS, cache_dir, load_dataset

    if list_:
        _list_datasets()
        return
    if name is None:
        raise ValueError(f"give a data set name ({', '.join(DATASETS)}) or --list")
    with Progress(TextColumn("[bold]building {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(name, total=total)
            bar.update(task, completed=done)

        ds = load_dataset(name, "all", seed=seed, limit=limit, rebuild=rebuild, progress=progress)
    info, stream = ds.info, ds.stream
    counts = ds.num_events()
    on_fraction = float(np.mean([ds.events(i)["p"].mean() if counts[i] else 0.5 for i in range(len(ds))]))

    table = Table(title=f"{info.name} (seed {seed}{'' if limit is None else f', limit {limit}'})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("description", info.description)
    table.add_row("samples", f"{len(ds)} (train {int((~ds.is_test).sum())}, test {int(ds.is_test.sum())})")
    table.add_row("classes", f"{info.num_classes}: {', '.join(info.class_names)}")
    table.add_row("sensor (W, H, P)", str(info.sensor_size))
    table.add_row("duration", f"{info.duration_us / 1000:g} ms per sample")
    table.add_row("binning", f"{stream.num_steps} steps x {stream.dt_us} us ({stream.bin_mode})")
    table.add_row("events / sample", f"mean {counts.mean():.0f}, min {counts.min()}, max {counts.max()}")
    table.add_row("ON / OFF", f"{on_fraction:.3f} / {1 - on_fraction:.3f}")
    table.add_row("active pixels / step", f"{ds.frames.astype(bool).sum(axis=(2, 3, 4)).mean():.1f}")
    seconds = f"{ds.meta.get('build_seconds', float('nan')):.1f} s"
    table.add_row("generated", f"now, in {seconds}" if task is not None else f"earlier (cached), in {seconds}")
    table.add_row("cache", str(ds.cache_path))
    console.print(table)

    per_class = Table(title="samples per class")
    for col in ("class", "train", "test", "events / sample"):
        per_class.add_column(col, justify="right")
    for c, cname in enumerate(info.class_names):
        sel = ds.labels == c
        per_class.add_row(cname, str(int((sel & ~ds.is_test).sum())), str(int((sel & ds.is_test).sum())),
                          f"{counts[sel].mean():.0f}" if sel.any() else "-")
    console.print(per_class)

    path = write_preview(ds, _preview_path(out, info.name, cache_dir()))
    console.print(f"preview: {path}", soft_wrap=True, highlight=False)
