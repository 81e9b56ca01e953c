"""Inference speed: torch eager vs onnxruntime on the same models (per step, host-driven time loop).

    .venv/bin/python benchmarks/inference.py [--steps 300] [--threads 1] [--quick]

For each model: build it (spiking init, seeded), save a model folder, export it to ONNX,
open it on the ``torch`` and ``onnxruntime`` devices, and time ``Device.step`` on random
binary event frames (10 % active pixels):

- latency: median wall-clock time of one step at batch 1 (``--steps`` timed steps after a
  warm-up), and its 90th percentile;
- throughput: ``32 / median step time`` at batch 32, in sample-steps per second;
- both also in CPU time of the calling thread (one compute thread each, so this is what
  a dedicated core gives, however busy the machine is).

Both devices get the same number of CPU threads (``--threads``, default 1: a small edge
core). One run; medians over many steps. Prints a table and writes
``benchmarks/results/inference.json``. Torch and onnxruntime spikes are checked to agree
on the timed frames first (a benchmark of a wrong graph means nothing).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = [  # (label, arch, width, input (C, H, W))
    ("dvs-cnn w1 34x34", "dvs-cnn", 1.0, (2, 34, 34)),
    ("dvs-cnn w0.5 34x34", "dvs-cnn", 0.5, (2, 34, 34)),
    ("vgg11 w0.125 32x32", "vgg11", 0.125, (2, 32, 32)),
    ("resnet w0.125 32x32", "resnet", 0.125, (2, 32, 32)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="timed steps at batch 1 (a fifth at batch 32)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both torch and onnxruntime")
    ap.add_argument("--quick", action="store_true", help="dvs-cnn models only, fewer steps")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inference.json")
    args = ap.parse_args()

    import torch

    import stdl_edge
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.devices import open_device
    from stdl_edge.devices.compare import Comparison, time_steps
    from stdl_edge.exporters.onnx import export
    from stdl_edge.io import write_json
    from stdl_edge.models import ModelConfig, build_model

    torch.set_num_threads(args.threads)
    models = MODELS[:2] if args.quick else MODELS
    steps = 60 if args.quick else args.steps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch, width, shape in models:
            folder = Path(tmp) / label.replace(" ", "_")
            model = build_model(ModelConfig(arch=arch, input_shape=shape, width=width, num_classes=10), seed=0)
            stream = StreamInfo(sensor_size=(shape[2], shape[1], 2), dt_us=1000, num_steps=20)
            save_model(folder, model, stream)
            t0 = time.perf_counter()
            export(folder)
            export_s = time.perf_counter() - t0
            devs = {"torch": open_device("torch", folder, record=True),
                    "onnxruntime": open_device("onnxruntime", folder / "export" / "onnx", record=True,
                                               intra_op_threads=args.threads, inter_op_threads=1)}
            rng = np.random.default_rng(0)
            check = Comparison(devs)
            check.add_batch((rng.random((8, 4, *shape)) < 0.1).astype(np.float32))
            pair = check.pairs[("torch", "onnxruntime")]
            for dev in devs.values():
                dev.record = False
            row = {"model": label, "arch": arch, "width": width, "input": list(shape),
                   "params": sum(p.numel() for p in model.parameters()), "export_s": round(export_s, 1),
                   "spikes_identical": pair.ok, "values_compared": pair.compared}
            for name, dev in devs.items():
                one = time_steps(dev, 1, steps, warmup=30)
                many = time_steps(dev, 32, max(steps // 5, 10), warmup=5)
                row[f"{name}_latency_ms"] = float(np.median(one.wall) * 1e3)
                row[f"{name}_latency_p90_ms"] = float(np.percentile(one.wall, 90) * 1e3)
                row[f"{name}_cpu_ms"] = float(np.median(one.cpu) * 1e3)
                row[f"{name}_throughput"] = float(32 / np.median(many.wall))
                row[f"{name}_throughput_cpu"] = float(32 / np.median(many.cpu))
            row["speedup_b1"] = row["torch_latency_ms"] / row["onnxruntime_latency_ms"]
            row["speedup_b1_cpu"] = row["torch_cpu_ms"] / row["onnxruntime_cpu_ms"]
            row["speedup_b32"] = row["onnxruntime_throughput"] / row["torch_throughput"]
            row["speedup_b32_cpu"] = row["onnxruntime_throughput_cpu"] / row["torch_throughput_cpu"]
            load = os.getloadavg()[0]
            row["load_average_1min"] = round(load, 2)
            rows.append(row)
            print(f"{label}: torch {row['torch_latency_ms']:.3f} ms, onnxruntime {row['onnxruntime_latency_ms']:.3f} ms "
                  f"({row['speedup_b1']:.1f}x), spikes identical: {pair.ok}", flush=True)

    header = ("model", "torch b=1 ms", "ort b=1 ms", "ratio", "torch b=1 CPU ms", "ort b=1 CPU ms", "ratio",
              "torch b=32 s-steps/s", "ort b=32 s-steps/s", "ratio", "ratio (CPU)", "identical")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['model']} | {r['torch_latency_ms']:.3f} | {r['onnxruntime_latency_ms']:.3f} | "
              f"{r['speedup_b1']:.1f}x | {r['torch_cpu_ms']:.3f} | {r['onnxruntime_cpu_ms']:.3f} | "
              f"{r['speedup_b1_cpu']:.1f}x | {r['torch_throughput']:,.0f} | {r['onnxruntime_throughput']:,.0f} | "
              f"{r['speedup_b32']:.1f}x | {r['speedup_b32_cpu']:.1f}x | {'yes' if r['spikes_identical'] else 'NO'} |")
    import onnxruntime

    write_json(args.out, {
        "benchmark": "inference", "stdl_edge_version": stdl_edge.__version__, "threads": args.threads,
        "steps_b1": steps, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        "rows": rows,
    })
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
