"""CPU time of one training batch per method and temporal credit, relative to bptt.

    .venv/bin/python benchmarks/timing.py [--batches 32,1] [--rounds 9] [--steps 8]
        [--methods bptt,sltt,local,stdl:none,stdl:trace,stdl:window2,...,spikingjelly]

One batch is ``engine.train_batch`` + an Adam step on dvs-cnn (2x34x34, 10 classes, K = 4
for stdl/local), random binary frames at 15 % density. The settings take turns every
round (round 0 warms up and is dropped), so a change in machine load hits them alike;
each call is timed in CPU time of this process (``time.process_time``) with one torch
thread. Reported: median and [min, max] over the rounds, and the median's ratio to bptt's.

``spikingjelly`` is the same network trained by SpikingJelly's multi-step BPTT (``step_mode='m'``,
torch backend: every conv and linear layer on all T steps at once, the LIF neurons stepped in
sequence), with our bptt model's weights copied in; before timing, its logits are checked
against ours on the benchmark batch (same neuron: ``v = v/2 + I``, hard reset to 0, detached
reset, triangle surrogate of width 1 = SpikingJelly's ``PiecewiseQuadratic(alpha=1)``). It
needs ``pip install --no-deps spikingjelly==2.0.0 loguru`` (its declared dependencies would
pull torchvision and torchaudio; the training step does not use them).
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

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(steps, batch, 2, 34, 34, generator=g) < 0.15).float()
    labels = torch.randint(0, 10, (batch,), generator=g)
    setups = {}
    for setting in settings:
        if setting == SPIKINGJELLY:
            continue
        cfg = TrainConfig(**parse_setting(setting))
        model = build_model(ModelConfig(input_shape=(2, 34, 34), num_classes=10), seed=0)
        plan = make_plan(model, cfg.method, subnets if cfg.method in ("stdl", "local") else 1, batch=batch)
        params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
        setups[setting] = (model, plan, cfg, torch.optim.Adam(params, lr=1e-3))
    steps_of = {s: _our_step(*setup, frames, labels) for s, setup in setups.items()}
    if SPIKINGJELLY in settings:
        reference = build_model(ModelConfig(input_shape=(2, 34, 34), num_classes=10), seed=0)
        steps_of[SPIKINGJELLY] = spikingjelly_step(reference, frames, labels)
    times: dict[str, list[float]] = {s: [] for s in settings}
    for r in range(rounds + 1):
        for setting in settings:
            t0 = time.process_time()
            steps_of[setting]()
            if r:
                times[setting].append(time.process_time() - t0)
    return times


#: the name of the SpikingJelly contender in ``--methods``
SPIKINGJELLY = "spikingjelly"


def _our_step(model, plan, cfg, opt, frames, labels):
    """One training batch of ours (``train_batch`` + Adam) as a callable."""
    from stdl_edge.stdl.engine import train_batch

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=plan.temporal,
                    credit=cfg.credit, window=cfg.credit_window)
        opt.step()

    return step


def spikingjelly_step(model, frames, labels):
    """SpikingJelly's multi-step BPTT of ``model`` (dvs-cnn; weights copied) as a callable batch.

    Raises ``RuntimeError`` if its logits differ from ``model``'s on ``frames`` (not the same network).
    """
    import torch

    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
    except ImportError as e:
        raise SystemExit(f"--methods {SPIKINGJELLY} needs SpikingJelly: pip install --no-deps spikingjelly==2.0.0 "
                         f"loguru ({e})") from None

    from stdl_edge.stdl.engine import step_loss

    def lif():
        return neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                              surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0), step_mode="m")

    mods: list[torch.nn.Module] = []
    for ours in model.layers:
        if ours.kind == "conv":
            c = ours.conv
            mods += [layer.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                  bias=c.bias is not None, step_mode="m"), lif()]
            mods[-2].load_state_dict(c.state_dict())
        elif ours.kind in ("dense", "readout"):
            lin = ours.linear
            mods.append(layer.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None, step_mode="m"))
            mods[-1].load_state_dict(lin.state_dict())
            if ours.kind == "dense":
                mods.append(lif())
        elif ours.kind == "flatten":
            mods.append(layer.Flatten(step_mode="m"))
        else:
            raise ValueError(f"the SpikingJelly contender has no counterpart of layer kind {ours.kind!r}")
    net = torch.nn.Sequential(*mods)
    steps = frames.shape[0]
    with torch.no_grad():
        ours = torch.stack(list(_per_step_logits(model, frames)))
        theirs = net(frames)
        functional.reset_net(net)
    if not torch.allclose(ours, theirs, atol=1e-4):
        raise RuntimeError(f"SpikingJelly's logits differ from ours by {float((ours - theirs).abs().max()):.3g}: "
                           "not the same network")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        step_loss(net(frames), labels, steps).backward()
        functional.reset_net(net)
        opt.step()

    return step


def _per_step_logits(model, frames):
    states = model.init_state(frames.shape[1], frames.device)
    for frame in frames:
        y, states = model.step(frame, states)
        yield y



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
