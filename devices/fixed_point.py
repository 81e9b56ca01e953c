"""Float vs fixed point: the trained model (torch) against its netx export on loihi-sim.

``stdl-edge export RUN --to netx`` passes :func:`evaluate_fixed_point` to the netx exporter,
which records the result under ``accuracy`` in ``quantization.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stdl_edge.artifact import RunFolder

from .base import classify
from .loihi_sim import LoihiSim


def evaluate_fixed_point(run_folder: str | Path, model_net: str | Path, limit: int | None = None,
                         batch: int = 64) -> dict[str, Any] | None:
    """Accuracy of the run's float model (torch) and of ``model_net`` on loihi-sim over the test split.

    Returns None when the run does not name a data set. ``limit``: at most this many test
    samples. The report: ``dataset``, ``split``, ``samples``, ``float_accuracy``,
    ``fixed_point_accuracy``, ``prediction_agreement`` (fractions), ``gap_points`` (float minus
    fixed point, in percentage points) and ``seconds``.
    """
    import torch

    from stdl_edge.data import load_dataset, materialize

    folder = RunFolder(run_folder)
    name = folder.dataset()
    if name is None:
        return None
    trained = folder.load()
    model, stream = trained.model, trained.stream
    ds = load_dataset(name, "test", num_steps=stream.num_steps, dt_us=stream.dt_us, bin_mode=stream.bin_mode,
                      **folder.data_options())
    n = len(ds.labels) if limit is None else min(limit, len(ds.labels))
    sim = LoihiSim.from_netx(model_net)
    correct_f = correct_q = agree = 0
    t0 = time.perf_counter()
    for frames, labels in materialize(ds).batches(batch, order=torch.arange(n)):  # (T, B, C, H, W), (B,)
        labels = labels.numpy()
        with torch.no_grad():
            pf = model(frames).argmax(1).numpy()
        pq = classify(sim, frames.numpy()).argmax(1)
        correct_f += int((pf == labels).sum())
        correct_q += int((pq == labels).sum())
        agree += int((pf == pq).sum())
    return {"dataset": name, "split": "test", "samples": n, "float_accuracy": correct_f / max(n, 1),
            "fixed_point_accuracy": correct_q / max(n, 1), "prediction_agreement": agree / max(n, 1),
            "gap_points": 100.0 * (correct_f - correct_q) / max(n, 1),
            "seconds": round(time.perf_counter() - t0, 2)}
