"""Test accuracy of dvs-cnn under each neuron setting, and of a config-defined model, same data and seed.

    .venv/bin/python benchmarks/neuron_settings.py [--dataset digits-dvs] [--epochs 3] [--limit 600] [--seed 0]

One setting changed at a time from the defaults (``stdl_edge.stdl.config.TrainConfig``), all
through the one trainer on the same data in the same order; the last rows are a layer list
given as a config and the default run with a validation split,
early stopping and the best epoch kept. Reports the final (and, with a validation split, the
best epoch's) test accuracy, the epochs run, and the seconds per epoch. Writes
``benchmarks/results/neuron_settings.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

#: label -> TrainConfig options on top of the defaults
VARIANTS: dict[str, dict[str, Any]] = {
    "default (theta 1, a_v 0.5, triangle, zero reset)": {},
    "threshold 0.5": {"threshold": 0.5},
    "tau_v = 4 dt (a_v 0.25)": {"voltage_decay": 0.25},
    "current decay 0.5 (CUBA synapse)": {"current_decay": 0.5},
    "surrogate atan": {"surrogate": "atan"},
    "surrogate width 0.5": {"surrogate_width": 0.5},
    "reset subtract (ONNX only)": {"reset": "subtract"},
    "BatchNorm on": {"batchnorm": True},
    "layer list: conv16, pool, conv32/2, flatten, dropout 0.2, dense128": {
        "layers": [{"kind": "conv", "channels": 16}, {"kind": "pool"}, {"kind": "conv", "channels": 32, "stride": 2},
                   {"kind": "flatten"}, {"kind": "dropout", "p": 0.2}, {"kind": "dense", "features": 128},
                   {"kind": "readout"}],
        "subnets": 3},
    "default + val 0.2, patience 2, best kept": {"val_fraction": 0.2, "patience": 2, "save_best": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits-dvs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from stdl_edge.stdl.trainer import TrainConfig, train

    torch.set_num_threads(1)
    rows = []
    print(f"{'setting':<60} {'test':>6} {'best':>6} {'epochs':>6} {'s/epoch':>8}")
    for label, options in VARIANTS.items():
        config = TrainConfig.from_dict({"dataset": args.dataset, "epochs": args.epochs, "limit": args.limit,
                                        "seed": args.seed, "device": "cpu", **options})
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.process_time()
            result = train(config, Path(tmp) / "run")
            cpu = time.process_time() - t0
            best = None
            if config.save_best:
                best = json.loads((Path(tmp) / "run" / "best" / "model.json").read_text())["stdl"]["results"]
        row = {"setting": label, "options": options, "test_acc": result.test_acc,
               "best_test_acc": best["test_acc"] if best else None, "epochs_run": len(result.history),
               "cpu_s_per_epoch": cpu / len(result.history)}
        rows.append(row)
        best_text = f"{row['best_test_acc'] * 100:6.1f}" if best else f"{'-':>6}"
        print(f"{label:<60} {result.test_acc * 100:6.1f} {best_text} {row['epochs_run']:>6} "
              f"{row['cpu_s_per_epoch']:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "neuron_settings.json"
    out.write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
