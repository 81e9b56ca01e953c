"""CPU time of one training batch per method and temporal credit, relative to bptt.

    .venv/bin/python benchmarks/timing.py [--batches 32,1] [--rounds 9] [--steps 8]
        [--methods bptt,sltt,local,stdl:none,stdl:trace,stdl:window2,...]

One batch is ``engine.train_batch`` + an Adam step on dvs-cnn (2x34x34, 10 classes, K = 4
for stdl/local), random binary frames at 15 % density. The settings take turns every
round (round 0 warms up and is dropped), so a change in machine load hits them alike;
each call is timed in CPU time of this process (``time.process_time``) with one torch
thread. Reported: median and [min, max] over the rounds, and the median's ratio to bptt's.
Writes ``benchmarks/results/timing.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from accuracy import parse_setting

RESULTS = Path(__file__).parent / "results"


def measure(settings: list[str], batch: int, steps: int, rounds: int, subnets: int = 4) -> dict[str, list[float]]:
    """CPU seconds of each round's batch per setting (interleaved)."""
    import torch

    from stdl_edge.models import ModelConfig, build_model
    from stdl_edge.stdl.auxiliary import make_plan
    from stdl_edge.stdl.config import TrainConfig
    from stdl_edge.stdl.engine import train_batch

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(steps, batch, 2, 34, 34, generator=g) < 0.15).float()
    labels = torch.randint(0, 10, (batch,), generator=g)
    setups = {}
    for setting in settings:
        cfg = TrainConfig(**parse_setting(setting))
        model = build_model(ModelConfig(input_shape=(2, 34, 34), num_classes=10), seed=0)
        plan = make_plan(model, cfg.method, subnets if cfg.method in ("stdl", "local") else 1, batch=batch)
        params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
        setups[setting] = (model, plan, cfg, torch.optim.Adam(params, lr=1e-3))
    times: dict[str, list[float]] = {s: [] for s in settings}
    for r in range(rounds + 1):
        for setting, (model, plan, cfg, opt) in setups.items():
            t0 = time.process_time()
            opt.zero_grad(set_to_none=True)
            train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=plan.temporal,
                        credit=cfg.credit, window=cfg.credit_window)
            opt.step()
            if r:
                times[setting].append(time.process_time() - t0)
    return times


def table(results: dict[int, dict[str, list[float]]]) -> str:
    lines = ["| batch | setting | CPU ms / batch (median [min, max]) | / bptt |", "|---|---|---|---|"]
    for batch, times in results.items():
        base = statistics.median(times["bptt"]) if "bptt" in times else None
        for setting, v in times.items():
            med = statistics.median(v)
            ratio = f"{med / base:.2f}" if base else "-"
            lines.append(f"| {batch} | {setting} | {med * 1e3:.1f} [{min(v) * 1e3:.1f}, {max(v) * 1e3:.1f}] | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="bptt,sltt,sltt:window2,local,local:window2,stdl:none,stdl:trace,"
                    "stdl:window2,stdl:window4")
    ap.add_argument("--batches", default="32,1", help="comma-separated batch sizes")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", type=Path, default=RESULTS / "timing.json")
    args = ap.parse_args()
    import torch

    from stdl_edge.io import write_json

    torch.set_num_threads(1)
    settings = args.methods.split(",")
    results = {int(b): measure(settings, int(b), args.steps, args.rounds) for b in args.batches.split(",")}
    print(table(results))
    summary: dict[str, Any] = {str(b): {s: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)}
                                        for s, v in t.items()} for b, t in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"benchmark": "timing", "model": "dvs-cnn", "steps": args.steps, "rounds": args.rounds,
                          "clock": "process_time", "threads": 1, "host": platform.node(),
                          "load_average": os.getloadavg(), "torch": torch.__version__, "results": summary,
                          "samples_s": {str(b): t for b, t in results.items()}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
