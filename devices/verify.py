"""Verification: do all devices agree with the trained model on a run's test split?

Each device opens its artifact from the run folder (torch: RUN; onnxruntime:
RUN/export/onnx; loihi-sim and lava: RUN/export/netx/model.net; missing exports are
written first), runs the first ``samples`` test samples of the run's data set with
``record=True``, and :class:`~stdl_edge.devices.compare.Comparison` compares every step of
every layer the devices share::

    from stdl_edge.devices.verify import run_verify

    comparison = run_verify("runs/demo", ["torch", "onnxruntime", "loihi-sim"], samples=64)
    comparison.ok                       # torch vs onnxruntime and loihi-sim vs lava identical
    comparison.accuracy("loihi-sim")    # fraction of the labelled samples right
    comparison.pairs[("torch", "onnxruntime")].mismatches   # first differences: layer, step, sample

Float vs fixed point (torch vs loihi-sim) reports agreement and accuracy only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from stdl_edge.artifact import ExportFn, RunFolder, StreamInfo

from .base import open_device
from .compare import Comparison

#: ``on_batch(samples_done, samples_total)``; the total is None where the data set decides it
BatchCallback = Callable[[int, "int | None"], None]


def dataset_batches(name: str, stream: StreamInfo, input_shape: tuple[int, ...], samples: int, batch: int,
                    seed: int = 0, data_options: dict[str, Any] | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(frames (T, B, C, H, W) float32, labels (B,) | None)`` of the first ``samples`` test samples
    of data set ``name``, binned as ``stream`` says (``T = stream.num_steps``).

    ``name = "random"`` gives seeded random binary frames (10 % active pixels) without labels.
    data_options: how to rebuild the data set (:meth:`~stdl_edge.artifact.RunFolder.data_options`).
    """
    if name == "random":
        rng = np.random.default_rng(seed)
        for start in range(0, samples, batch):
            b = min(batch, samples - start)
            yield (rng.random((stream.num_steps, b, *input_shape)) < 0.1).astype(np.float32), None
        return
    import torch

    from stdl_edge.data import load_dataset, materialize

    ds = load_dataset(name, "test", num_steps=stream.num_steps, dt_us=stream.dt_us, bin_mode=stream.bin_mode,
                      **(data_options or {}))
    frame_shape = tuple(ds.frames.shape[2:])
    if frame_shape != tuple(input_shape):
        raise ValueError(f"data set {name!r} gives frames {frame_shape} but the model takes {tuple(input_shape)}; "
                         "pass the data set the run was trained on with --dataset")
    n = min(samples, len(ds.labels))
    for frames, labels in materialize(ds).batches(batch, order=torch.arange(n)):
        yield frames.numpy(), labels.numpy()


def run_verify(run: str | Path, devices: list[str], samples: int = 64, dataset: str | None = None, batch: int = 16,
               options: dict[str, dict[str, Any]] | None = None, *, export: ExportFn | None = None,
               notify: Callable[[str], None] | None = None, on_batch: BatchCallback | None = None) -> Comparison:
    """Open ``devices`` on the run folder ``run`` (exporting what is missing) and compare them.

    samples: test samples to run, in batches of ``batch``. dataset: the data set (default:
    the run's own; ``"random"``: random frames, no labels). options: per device, extra
    :func:`~stdl_edge.devices.open_device` options. export: writes a missing export
    (:func:`stdl_edge.api.export`; without it a missing export is an error naming the command),
    notify(message): told when an export is written first. on_batch(done, total): after each batch. Returns the
    :class:`~stdl_edge.devices.compare.Comparison` (``.ok``, ``.pairs``, ``.accuracy(name)``).
    """
    folder = RunFolder(run)
    folder.record()  # a clear error when ``run`` is not a run folder
    if len(devices) < 2:
        raise ValueError(f"--devices {','.join(devices)}: give at least two devices to compare")
    if samples < 1 or batch < 1:
        raise ValueError(f"--samples {samples} and --batch {batch} must be >= 1")
    opened = {}
    for name in devices:
        opened[name] = open_device(name, folder.path, export=export, notify=notify, record=True,
                                   **(options or {}).get(name, {}))
    first = next(iter(opened.values()))
    name = dataset or folder.dataset()
    if name is None:
        raise ValueError(f"{folder.record_file} does not name its data set; pass --dataset NAME "
                         "(or --dataset random)")
    comparison = Comparison(opened)
    total = samples if name == "random" else None
    own = dataset is None or dataset == folder.dataset()
    for frames, labels in dataset_batches(name, first.stream, first.input_shape, samples, batch,
                                          data_options=folder.data_options() if own else None):
        comparison.add_batch(frames, labels)
        if on_batch is not None:
            on_batch(comparison.samples, total)
    return comparison
