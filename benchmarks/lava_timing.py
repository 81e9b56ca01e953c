"""Lava (Loihi2SimCfg fixed_pt) wall time per step vs loihi-sim, on a small exported dvs-cnn.

Prints a table and writes ``benchmarks/results/lava_timing.json``. The marginal cost per step is
``(time at T_long - time at T_short) / (T_long - T_short)``, which separates Lava's per-stream
compile-and-start overhead from its per-step cost. Both devices get the same frames and must
return the same readout (checked).

    python benchmarks/lava_timing.py [--width 0.25] [--short 20] [--long 80]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stdl_edge.artifact import StreamInfo
from stdl_edge.devices import classify
from stdl_edge.devices.lava_device import LavaDevice
from stdl_edge.devices.loihi_sim import LoihiSim
from stdl_edge.exporters.netx import export_network
from stdl_edge.io import write_json
from stdl_edge.models import ModelConfig, build_model

RESULTS = Path(__file__).resolve().parent / "results" / "lava_timing.json"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--short", type=int, default=20)
    ap.add_argument("--long", type=int, default=80)
    ap.add_argument("--density", type=float, default=0.05, help="fraction of active input pixels per step")
    args = ap.parse_args()

    net = build_model(ModelConfig(arch="dvs-cnn", input_shape=(2, 34, 34), num_classes=10, width=args.width),
                      seed=0).eval()
    with torch.no_grad():  # random weights scaled up so that every layer is active
        for p in net.parameters():
            p.mul_(3.0)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = export_network(net, StreamInfo((34, 34, 2), 1000, args.short), Path(tmp) / "model.net")
        sim = LoihiSim.from_netx(path)
        frames = {t: (rng.random((t, 1, 2, 34, 34)) < args.density).astype(np.float32)
                  for t in (args.short, args.long)}
        for label, opts in (("count=False (readout only)", {"count": False}), ("default (count=True)", {}),
                            ("record=True", {"record": True})):
            dev = LavaDevice.load(path, **opts)
            times = {}
            for t, fr in frames.items():
                out = {}
                times[t] = timed(lambda: out.setdefault("y", classify(dev, fr)))  # noqa: B023
                if not np.array_equal(out["y"], classify(sim, fr)):
                    raise RuntimeError(f"lava and loihi-sim readouts differ ({label}, T={t})")
            marginal = (times[args.long] - times[args.short]) / (args.long - args.short)
            rows.append({"what": f"lava classify, {label}", "short_s": times[args.short],
                         "long_s": times[args.long], "per_step_ms": 1e3 * marginal,
                         "overhead_s": times[args.short] - marginal * (args.short + dev.latency)})
        sim_times = {t: timed(lambda: classify(sim, fr)) for t, fr in frames.items()}  # noqa: B023
        rows.append({"what": "loihi-sim classify", "short_s": sim_times[args.short], "long_s": sim_times[args.long],
                     "per_step_ms": 1e3 * (sim_times[args.long] - sim_times[args.short]) / (args.long - args.short),
                     "overhead_s": 0.0})
        dev = LavaDevice.load(path, count=False)
        dev.reset(1)
        first = timed(lambda: dev.step(frames[args.short][0]))
        rest = timed(lambda: [dev.step(f) for f in frames[args.short][1:]]) / (args.short - 1)
        dev.close()
        rows.append({"what": "lava step mode (count=False)", "short_s": first + rest * (args.short - 1), "long_s": float("nan"),
                     "per_step_ms": 1e3 * rest, "overhead_s": first})

    print(f"dvs-cnn width {args.width}, 2x34x34, batch 1, T = {args.short} / {args.long}, density {args.density}")
    print(f"{'what':32s} {'T short (s)':>12s} {'T long (s)':>11s} {'ms/step':>9s} {'overhead (s)':>13s}")
    for r in rows:
        print(f"{r['what']:32s} {r['short_s']:12.2f} {r['long_s']:11.2f} {r['per_step_ms']:9.1f} {r['overhead_s']:13.2f}")
    write_json(RESULTS, {"config": vars(args), "rows": [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                                                          for k, v in r.items()} for r in rows]})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
