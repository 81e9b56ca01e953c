"""Split deployment: STDL subnetwork 0 on onnxruntime (say, an edge CPU next to the sensor),
the remaining subnetworks on torch (say, a bigger host), and a check that the chain equals
the whole model.

    .venv/bin/python examples/split_deployment.py [RUN_FOLDER]

STDL trains each subnetwork on the (detached) output spikes of the one before, so the
boundary between two subnetworks is a natural place to cut a deployment: only binary
spikes cross it. Here subnetwork 0 runs from its own ONNX step graph (``subnet0.onnx``,
written by the ONNX exporter) and the rest runs from the trained torch model, layer range
``boundaries[1][0]:``. Both keep their own state; the host loop feeds each step's spikes
from one to the other. The printed check compares, on digits-dvs test samples, the chain's
readout with the whole model's, and the spikes crossing the boundary.

Without RUN_FOLDER a 2-subnetwork STDL model is trained for one epoch on 300 samples first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run folder trained with K >= 2 subnetworks")
    ap.add_argument("--samples", type=int, default=16)
    args = ap.parse_args()
    try:
        import torch

        from stdl_edge.api import export, load_run
        from stdl_edge.data import load_dataset
        from stdl_edge.devices.onnxruntime_device import StepSession
    except ImportError as e:
        sys.exit(f"this example needs the ONNX exporter, the onnxruntime device, the data sets and the STDL run "
                 f"folders; one of them is not available here: {e}")

    run_dir = Path(args.run) if args.run else None
    if run_dir is None:
        from stdl_edge.stdl.trainer import TrainConfig, train

        run_dir = Path(tempfile.mkdtemp(prefix="stdl-edge-split-")) / "run"
        print(f"training a 2-subnetwork STDL dvs-cnn for one epoch -> {run_dir}")
        train(TrainConfig(dataset="digits-dvs", method="stdl", subnets=2, epochs=1, limit=300, device="cpu"), run_dir)
    run = load_run(run_dir)
    if run.num_subnets < 2:
        sys.exit(f"{run_dir} has {run.num_subnets} subnetwork; train with --subnets 2 or more")
    paths = export(run_dir, to="onnx")
    subnet0 = next(p for p in paths if p.name == "subnet0.onnx")
    cut = run.boundaries[1][0]
    print(f"subnetwork 0 = layers 0:{cut} on onnxruntime ({subnet0.name}); layers {cut}: on torch")

    edge = StepSession(subnet0, intra_op_threads=1)
    host = run.model
    ds = load_dataset("digits-dvs", "test", num_steps=run.stream.num_steps, dt_us=run.stream.dt_us)
    n = min(args.samples, len(ds))
    frames = np.stack([ds[i][0].numpy() for i in range(n)], axis=1)  # (T, B, 2, H, W)

    with torch.no_grad():
        edge_state = edge.zero_state(n)
        host_state = host.init_state(n)[cut:]
        whole_state = host.init_state(n)
        chain_sum = np.zeros((n, host.num_classes))
        whole_sum = np.zeros((n, host.num_classes))
        boundary_mismatch = 0
        for t in range(frames.shape[0]):
            spikes, edge_state = edge.run(frames[t], edge_state)                      # on the edge device
            y, host_state = host.step(torch.from_numpy(spikes), host_state, start=cut)  # on the host
            chain_sum += y.numpy()
            rec: list[torch.Tensor] = []
            y_whole, whole_state = host.step(torch.from_numpy(frames[t]), whole_state, record=rec)
            whole_sum += y_whole.numpy()
            boundary_mismatch += int((rec[cut - 1].numpy() != spikes).sum())
    chain, whole = chain_sum / frames.shape[0], whole_sum / frames.shape[0]
    print(f"boundary spikes that differ: {boundary_mismatch} of {spikes.size * frames.shape[0]}")
    print(f"max |chain - whole| readout: {np.abs(chain - whole).max():.2e}; "
          f"same predictions: {np.array_equal(chain.argmax(1), whole.argmax(1))}; "
          f"accuracy {np.mean(chain.argmax(1) == ds.labels[:n]):.3f}")


if __name__ == "__main__":
    main()
