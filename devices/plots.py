"""Plots of a streaming run (:class:`~stdl_edge.devices.streaming.RunResult`).

matplotlib is imported inside :func:`write_plots`, so importing this module costs nothing.
Layers are named the same on every device: ``layer k`` for the k-th layer of spiking
neurons, in order (torch's ``0.conv``, loihi-sim's ``layer0``, ...), with its neuron count;
the readout (every device's last layer) is drawn from its values, never as spikes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.io import atomic_path

from .streaming import RunResult


def plot_layers(result: RunResult) -> list[tuple[str, str, int]]:
    """``(device name, display name, neurons)`` of the recorded spiking layers, readout excluded.

    A recorded layer counts as spiking when every kept step holds only 0/1 values and the run
    does not count it as neuron-less (torch's ``flatten``); its neurons are the recorded size
    (the same on every device, whatever its layer naming).
    """
    if not result.kept_layers:
        return []
    readout = result.layer_names[-1] if result.layer_names else None
    index = {n: i for i, n in enumerate(result.layer_names)}
    rows = []
    for key, first in result.kept_layers[0].items():
        if key == readout or first.size == 0:
            continue
        if result.neurons is not None and key in index and not result.neurons[index[key]]:
            continue
        if all(np.isin(d[key], (0.0, 1.0)).all() for d in result.kept_layers):
            rows.append((key, f"layer {len(rows) + 1}", int(first.size)))
    return rows


def _heading(result: RunResult, source: str, class_names: list[str]) -> str:
    """What the kept steps show: the source, the first window or sample, its label and prediction."""
    if not result.predictions:
        return source
    p: dict[str, Any] = result.predictions[0]
    if "window" in p:
        where = f"window {p['window']} (t = {p['t_us'] / 1e3:g} ms, {p['t_abs_us']} us on the file's clock)"
    else:
        label = class_names[p["label"]] if p["label"] < len(class_names) else str(p["label"])
        where = f"sample {p['sample']}, label {label}"
    return f"{source}: {where}, prediction {p['class']}"


def write_plots(result: RunResult, folder: str | Path, class_names: list[str] | None = None,
                source: str = "", dt_us: int | None = None) -> list[Path]:
    """Write ``events.png`` (input frames of the first window or sample), ``raster.png`` (input
    and layer spikes over time, readout values) and ``rates.png`` (per-layer firing rates,
    spikes per neuron per step) into ``folder``; returns their paths. Atomic writes.

    Each figure is titled with ``source``, the window or sample shown, its label and
    prediction; ``dt_us`` gives the steps' times in ms. The frames, readouts and layer spikes
    come from a run with ``keep_steps > 0`` (:func:`~stdl_edge.devices.streaming.run_events`);
    without them only ``rates.png`` is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(class_names or [])
    heading = _heading(result, source, names)
    written = []

    def save(fig, name: str) -> None:
        path = folder / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    def steps_text(a: int, b: int) -> str:
        text = f"step {a}" if a == b else f"steps {a}-{b}"
        return text if dt_us is None else f"{text}\n{a * dt_us / 1e3:g}-{(b + 1) * dt_us / 1e3:g} ms"

    layers = plot_layers(result)
    frames = np.stack(result.kept_frames) if result.kept_frames else None
    if frames is not None:
        n = min(8, len(frames))
        groups = np.array_split(np.arange(len(frames)), n)
        fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.6), squeeze=False)
        for ax, g in zip(axes[0], groups):
            img = frames[g, 1].sum(0) - frames[g, 0].sum(0)  # ON - OFF
            lim = max(float(np.abs(img).max()), 1.0)
            ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax.set_title(steps_text(int(g[0]), int(g[-1])), fontsize=8)
            ax.axis("off")
        fig.suptitle(f"{heading}\ninput events, steps 0-{len(frames) - 1} (ON red, OFF blue)", fontsize=9)
        save(fig, "events.png")

        rows = 2 + len(layers)
        fig, axes = plt.subplots(rows, 1, figsize=(8, 1.8 * rows), sharex=True, squeeze=False)
        flat = frames.reshape(len(frames), -1)
        cols = np.flatnonzero(flat.any(0))[:4000]
        t, i = np.nonzero(flat[:, cols])
        axes[0, 0].scatter(t, i, s=1, marker="|")
        axes[0, 0].set_ylabel("input px", fontsize=8)
        for r, (key, label, size) in enumerate(layers, start=1):
            spk = np.stack([d[key] for d in result.kept_layers])
            cols = np.flatnonzero(spk.any(0))[:4000]
            t, i = np.nonzero(spk[:, cols])
            axes[r, 0].scatter(t, i, s=1, marker="|")
            axes[r, 0].set_ylabel(f"{label}\n{size} neurons", fontsize=8)
        outs = np.stack(result.kept_outputs)
        for c in range(outs.shape[1]):
            axes[-1, 0].plot(outs[:, c], lw=0.8, label=names[c] if c < len(names) else str(c))
        axes[-1, 0].set_ylabel("readout value", fontsize=8)
        axes[-1, 0].set_xlabel("time step")
        if outs.shape[1] <= 12:
            axes[-1, 0].legend(fontsize=6, ncol=min(outs.shape[1], 6))
        axes[0, 0].set_title(f"{heading}\nspikes of steps 0-{len(frames) - 1}; readout values", fontsize=9)
        save(fig, "raster.png")

    steps = max(result.sample_steps, 1)
    if layers:  # the same layers and unit on every device
        index = {n: i for i, n in enumerate(result.layer_names)}
        labels = [label for _, label, _ in layers]
        rates = [float(result.spikes[index[k]]) / (size * steps) if k in index else 0.0 for k, _, size in layers]
    elif len(result.layer_names) and result.neurons is not None:
        pairs = [(n, s / (c * steps)) for n, s, c in zip(result.layer_names, result.spikes, result.neurons) if c]
        labels, rates = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        labels, rates = [], []
    if labels:
        fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(labels)), 3))
        ax.bar(range(len(rates)), rates)
        ax.set_ylabel("spikes per neuron per step")
        ax.set_xticks(range(len(rates)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{source}: per-layer activity over the whole run" if source else "per-layer activity",
                     fontsize=9)
        save(fig, "rates.png")
    return written
