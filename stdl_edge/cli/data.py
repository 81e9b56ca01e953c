"""``stdl-edge data``: build or load a data set (bundled, tonic, folder:PATH, plug-in), summarise it, draw a preview.

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
from .options import int_tuple


def _list_datasets(root: str | None) -> None:
    """Every data set: what it is, where it is read from or cached, and whether it is there."""
    from stdl_edge.data import DATASETS, cache_path, dataset_entry, dataset_missing
    from stdl_edge.datasets.plugins import load_plugins

    plugins = set(load_plugins())
    table = Table(title="data sets (also folder:PATH, a folder of your recordings with one subfolder per class)")
    for col in ("name", "classes", "sensor", "samples", "kind", "present"):
        table.add_column(col, no_wrap=True)
    places = []
    for name in DATASETS:
        builder = dataset_entry(name, check=False)
        info = builder.info
        if builder.build is not None:
            where, present = str(cache_path(name)), cache_path(name).exists()
            kind = "plug-in" if name in plugins else "generated"
            status = "yes" if present else "no (built on first use)"
        else:
            where, present = builder.where({"root": root}) if builder.where is not None else ("", False)
            kind = "plug-in" if name in plugins else "tonic"
            status = "yes" if present else "no"
        missing = dataset_missing(name)
        if missing:
            status += f"; {missing}"
        table.add_row(name, str(info.num_classes or "folders"), "x".join(map(str, info.sensor_size[:2])),
                      f"{info.num_samples:,}", kind, status)
        places.append(f"  {name}: {where}")
    console.print(table)
    console.print("where each is looked for (tonic sets: --data-root or $STDL_EDGE_DATA_ROOT; docs/data.md):\n"
                  + "\n".join(places), soft_wrap=True, highlight=False)


def write_preview(ds, path: Path) -> Path:
    """Draw one example per class (rows) over its time steps (columns): ON red, OFF blue, both purple."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stdl_edge.io import atomic_path

    names = ds.stream.class_names
    steps = ds.stream.num_steps
    firsts = {c: np.flatnonzero(ds.labels == c) for c in range(len(names))}
    frames = {c: ds[int(idx[0])][0].numpy() for c, idx in firsts.items() if len(idx)}
    fig, axes = plt.subplots(len(names), steps, figsize=(1.1 * steps + 1.2, 1.1 * len(names) + 0.6),
                             squeeze=False)
    for c, cname in enumerate(names):
        idx = firsts[c]
        for k in range(steps):
            ax = axes[c, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if len(idx) == 0:
                continue
            off, on = frames[c][k, 0] > 0, frames[c][k, 1] > 0
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


#: samples read for the event statistics of `stdl-edge data` (evenly spaced over the data set)
STATS_SAMPLES = 500


@app.command("data")
def data_command(
    name: str = typer.Argument(None, help="data set name or folder:PATH (see --list)", show_default=False),
    out: Path = typer.Option(None, "--out", help="preview: a .png file, or a folder for <name>-preview.png "
                                                 "[default: the data cache folder]", show_default=False),
    seed: int = typer.Option(0, help="generation and split seed"),
    rebuild: bool = typer.Option(False, "--rebuild", help="regenerate even if cached"),
    limit: int = typer.Option(None, help="a class-balanced subset of about this many samples (quick look)"),
    list_: bool = typer.Option(False, "--list", help="list the data sets, where each is looked for, and exit"),
    data_root: str = typer.Option(None, "--data-root", help="folder holding the tonic data sets "
                                                            "[default: $STDL_EDGE_DATA_ROOT]", show_default=False),
    sensor_size: str = typer.Option(None, "--sensor-size", help="W,H of a folder whose files do not say",
                                    show_default=False),
    slice_by: str = typer.Option(None, "--slice-by", help="cut recordings into windows by 'time' or 'events'",
                                 show_default=False),
    slice_length: int = typer.Option(None, "--slice-length", help="window length (us or events)",
                                     show_default=False),
    slice_overlap: int = typer.Option(0, "--slice-overlap", help="overlap of consecutive windows"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave unreadable recordings out (counted)"),
) -> None:
    """Build (first use) or load a data set, print its statistics and write a preview PNG."""
    import numpy as np

    from stdl_edge.datasets import load_options
    from stdl_edge.data import DATASETS, cache_dir, load_dataset

    if list_:
        _list_datasets(data_root)
        return
    if name is None:
        raise ValueError(f"give a data set name ({', '.join(DATASETS)}, folder:PATH) or --list")
    options = load_options({"data_root": data_root, "sensor_size": int_tuple(sensor_size, "--sensor-size", 2, "W,H, e.g. 346,260"),
                            "slice_by": slice_by, "slice_length": slice_length, "slice_overlap": slice_overlap,
                            "skip_bad": skip_bad})
    if (slice_by is None) != (slice_length is None):
        raise ValueError("--slice-by and --slice-length go together, e.g. --slice-by time --slice-length 1500000")
    with Progress(TextColumn("[bold]building {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(name, total=total)
            bar.update(task, completed=done)

        ds = load_dataset(name, "all", seed=seed, limit=limit, rebuild=rebuild, progress=progress, **options)
    info, stream = ds.info, ds.stream
    picked = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), STATS_SAMPLES)).round().astype(int))
    events = [ds.events(int(i)) for i in picked]
    counts = np.array([len(e) for e in events])
    on_fraction = float(np.mean([e["p"].mean() if len(e) else 0.5 for e in events]))
    active = np.mean([ds[int(i)][0].numpy().astype(bool).sum(axis=(1, 2, 3)).mean() for i in picked[:100]])
    over = "" if len(picked) == len(ds) else f" (over {len(picked)} samples)"

    table = Table(title=f"{info.name} (seed {seed}{'' if limit is None else f', limit {limit}'})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("description", info.description)
    table.add_row("samples", f"{len(ds)} (train {int((~ds.is_test).sum())}, test {int(ds.is_test.sum())})")
    skipped = getattr(ds.samples, "skipped", None) or [
        s for part in getattr(ds.samples, "parts", ()) for s in getattr(part, "skipped", [])]
    if skipped:
        table.add_row("skipped", f"{len(skipped)} unreadable: " + "; ".join(f"{f} ({why})" for f, why in skipped[:3]))
    table.add_row("classes", f"{len(stream.class_names)}: {', '.join(stream.class_names)}")
    table.add_row("sensor (W, H, P)", str(tuple(ds.samples.sensor_size)))
    table.add_row("duration", f"{info.duration_us / 1000:g} ms per sample")
    table.add_row("binning", f"{stream.num_steps} steps x {stream.dt_us} us ({stream.bin_mode})")
    table.add_row("events / sample", f"mean {counts.mean():.0f}, min {counts.min()}, max {counts.max()}{over}")
    table.add_row("ON / OFF", f"{on_fraction:.3f} / {1 - on_fraction:.3f}")
    table.add_row("active pixels / step", f"{active:.1f}")
    if ds.cache_path is not None:
        seconds = f"{ds.meta.get('build_seconds', float('nan')):.1f} s"
        table.add_row("generated", f"now, in {seconds}" if task is not None else f"earlier (cached), in {seconds}")
        table.add_row("cache", str(ds.cache_path))
    else:
        table.add_row("read from", ds.samples.where(0).rsplit("/", 2)[0] if "/" in ds.samples.where(0)
                      else ds.samples.where(0))
    console.print(table)

    per_class = Table(title="samples per class")
    for col in ("class", "train", "test", "events / sample"):
        per_class.add_column(col, justify="right")
    picked_labels = ds.labels[picked]
    for c, cname in enumerate(stream.class_names):
        sel = ds.labels == c
        mine = picked_labels == c
        per_class.add_row(cname, str(int((sel & ~ds.is_test).sum())), str(int((sel & ds.is_test).sum())),
                          f"{counts[mine].mean():.0f}" if mine.any() else "-")
    console.print(per_class)

    path = write_preview(ds, _preview_path(out, info.name.replace("/", "_").replace(":", "-"), cache_dir()))
    console.print(f"preview: {path}", soft_wrap=True, highlight=False)
