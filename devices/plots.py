"""Plots of a streaming run (:class:`~stdl_edge.devices.streaming.RunResult`).

matplotlib is imported inside :func:`write_plots`, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stdl_edge.io import atomic_path

from .streaming import RunResult


def write_plots(result: RunResult, folder: str | Path, class_names: list[str] | None = None) -> list[Path]:
    """Write ``events.png`` (input frames of the first window), ``raster.png`` (input and
    recorded layer spikes over time, readout) and ``rates.png`` (per-layer firing rates, spikes
    per neuron per step) into ``folder``; returns their paths. Atomic writes.

    The frames, readouts and layer spikes come from a run with ``keep_steps > 0``
    (:func:`~stdl_edge.devices.streaming.run_events`); without them only ``rates.png`` is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        path = folder / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    frames = np.stack(result.kept_frames) if result.kept_frames else None
    if frames is not None:
        n = min(8, len(frames))
        groups = np.array_split(np.arange(len(frames)), n)
        fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.3), squeeze=False)
        for ax, g in zip(axes[0], groups):
            img = frames[g, 1].sum(0) - frames[g, 0].sum(0)  # ON - OFF
            lim = max(float(np.abs(img).max()), 1.0)
            ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax.set_title(f"steps {g[0]}-{g[-1]}", fontsize=8)
            ax.axis("off")
        fig.suptitle("input events (ON red, OFF blue)")
        save(fig, "events.png")

        layers = [k for k in (result.kept_layers[0] if result.kept_layers else {})]
        rows = 2 + len(layers)
        fig, axes = plt.subplots(rows, 1, figsize=(8, 1.8 * rows), sharex=True, squeeze=False)
        flat = frames.reshape(len(frames), -1)
        cols = np.flatnonzero(flat.any(0))[:4000]
        t, i = np.nonzero(flat[:, cols])
        axes[0, 0].scatter(t, i, s=1, marker="|")
        axes[0, 0].set_ylabel("input px")
        for r, key in enumerate(layers, start=1):
            spk = np.stack([d[key] for d in result.kept_layers])
            cols = np.flatnonzero(spk.any(0))[:4000]
            t, i = np.nonzero(spk[:, cols])
            axes[r, 0].scatter(t, i, s=1, marker="|")
            axes[r, 0].set_ylabel(key, fontsize=8)
        outs = np.stack(result.kept_outputs)
        for c in range(outs.shape[1]):
            axes[-1, 0].plot(outs[:, c], lw=0.8, label=(class_names or [])[c] if class_names else str(c))
        axes[-1, 0].set_ylabel("readout")
        axes[-1, 0].set_xlabel("time step")
        if outs.shape[1] <= 12:
            axes[-1, 0].legend(fontsize=6, ncol=min(outs.shape[1], 6))
        save(fig, "raster.png")

    if len(result.layer_names):
        fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(result.layer_names)), 3))
        steps = max(result.sample_steps, 1)
        if result.neurons is not None:
            rates = [s / (n * steps) if n else 0.0 for s, n in zip(result.spikes, result.neurons)]
            ax.set_ylabel("spikes per neuron per step")
        else:
            rates = [s / steps for s in result.spikes]
            ax.set_ylabel("spikes per step")
        ax.bar(range(len(rates)), rates)
        ax.set_xticks(range(len(rates)), result.layer_names, rotation=45, ha="right", fontsize=8)
        ax.set_title("per-layer activity")
        save(fig, "rates.png")
    return written
