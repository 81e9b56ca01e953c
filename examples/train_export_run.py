"""Train a spiking CNN with STDL on the bundled digits-dvs data, export it, and run it on a device.

    .venv/bin/python examples/train_export_run.py [OUT_FOLDER] [--device loihi-sim|torch|onnxruntime]

Steps (Python API only, no subprocess):
1. train ``dvs-cnn`` with STDL (K = 4 subnetworks, auxiliary heads) for 2 epochs on a
   600-sample subset of digits-dvs, on the CPU (about a minute on 2 cores);
2. export it to Lava netx HDF5 (for loihi-sim / lava) and ONNX (for onnxruntime);
3. stream the digits-dvs test split through the chosen device, one prediction per sample,
   and print the accuracy next to the trained model's own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def need(what: str, module: str):
    """Import ``module`` or stop with a message naming the part of stdl-edge that is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        sys.exit(f"this example needs {what} ({module}), which is not available in this install: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="run folder to create (default: a temporary folder)")
    ap.add_argument("--device", default="loihi-sim", choices=["loihi-sim", "torch", "onnxruntime", "lava"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=600, help="training samples (a seeded subset)")
    ap.add_argument("--test-samples", type=int, default=200)
    args = ap.parse_args()

    trainer = need("the STDL trainer", "stdl_edge.stdl.trainer")
    need("the bundled data sets", "stdl_edge.data")
    import stdl_edge
    from stdl_edge.sources import open_source

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="stdl-edge-example-")) / "run"
    config = trainer.TrainConfig(dataset="digits-dvs", model="dvs-cnn", method="stdl", subnets=4,
                                 epochs=args.epochs, limit=args.limit, batch_size=32, device="cpu", seed=0)
    print(f"training {config.model} with {config.method} (K={config.subnets}) for {config.epochs} epochs -> {out}")
    result = stdl_edge.train(out, config, on_epoch=lambda m: print(
        f"  epoch {m.epoch}: train acc {m.train_acc:.3f}  test acc {m.test_acc:.3f}"))
    print(f"trained: test accuracy {result.test_acc:.3f}")

    if args.device in ("loihi-sim", "lava"):
        paths = stdl_edge.export(out, to="netx")
        artifact = next(p for p in paths if p.name == "model.net")
    elif args.device == "onnxruntime":
        paths = stdl_edge.export(out, to="onnx")
        artifact = next(p for p in paths if p.name == "manifest.json")
    else:
        artifact = out
    print(f"exported: {artifact}")

    device = stdl_edge.open_device(artifact, args.device)
    source = open_source("digits-dvs:test", limit=args.test_samples)
    run = stdl_edge.run_events(device, source, per_sample=True)
    lat = run.latency_ms()
    energy = "n/a" if run.energy_uj is None else f"{run.energy_uj:.2f} uJ"
    print(f"{args.device}: accuracy {run.accuracy:.3f} on {len(run.predictions)} test samples, "
          f"step latency p50 {lat['p50']:.3f} ms (batch {run.batch}), "
          f"{run.events_per_s / 1e6:.2f} M events/s, energy estimate {energy}")


if __name__ == "__main__":
    main()
