"""Peak training memory of stdl, local, sltt and bptt vs T, K and the temporal credit.

    .venv/bin/python benchmarks/memory.py [--batch 32] [--steps 4,8,16,32] [--subnets 1,2,4]
                                          [--models dvs-cnn,vgg11] [--quick]

For every model, setting (method and temporal credit: ``stdl:window2`` is stdl with
``--temporal-credit window --window 2``; a bare name is the method's default), K and T:
one real training batch (``stdl_edge.stdl.engine.train_batch``, random binary event frames
at 15 % density; activation memory does not depend on the values) under
:class:`~stdl_edge.stdl.memory.SavedTensorMeter`, then one Adam step:

- activations: peak bytes of tensors saved for backward (exact) over the whole batch (all
  steps, all subnetworks);
- state: the state carried from step to step (neuron states of the model and heads, and
  the eligibility traces of ``trace``), ``BatchResult.state_bytes``;
- total: activations + state + parameters + gradients + Adam state of the model and heads.

bptt and sltt have one subnetwork, so they are measured at K = 1 only. Ratios are
against bptt at the same T. Targets (DESIGN.md section 7): stdl (default credit) <= 1/4 of
bptt at T = 8, K = 4, counting the state; stdl grows <= 1.1x from T = 4 to T = 32. Writes
``benchmarks/results/memory.json`` and ``memory.png``. CUDA numbers: benchmarks/gpu_memory.py.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # accuracy.parse_setting, also when imported by gpu_memory.py

RESULTS = Path(__file__).parent / "results"

#: (label, arch, width, input shape): dvs-cnn is the deployable model; vgg11 at width 0.5 is
#: a bigger one where activations, not parameters, dominate
MODELS = {
    "dvs-cnn": ("dvs-cnn", 1.0, (2, 34, 34)),
    "vgg11": ("vgg11", 0.5, (2, 32, 32)),
}


def measure(model_name: str, method: str, subnets: int, steps: int, batch: int, device: str = "cpu",
            cuda: bool = False) -> dict[str, Any]:
    """One training batch of ``method``: activation peak (exact) and the persistent state, in bytes."""
    import torch

    from stdl_edge.models import ModelConfig, build_model
    from stdl_edge.stdl.auxiliary import make_plan
    from stdl_edge.stdl.config import TrainConfig
    from stdl_edge.stdl.engine import train_batch
    from stdl_edge.stdl.memory import SavedTensorMeter, optimizer_bytes, param_bytes

    from accuracy import parse_setting

    cfg = TrainConfig(**parse_setting(method))
    arch, width, shape = MODELS[model_name]
    model = build_model(ModelConfig(arch=arch, input_shape=shape, num_classes=10, width=width), seed=0)
    plan = make_plan(model, cfg.method, subnets, batch=batch, seed=0)
    model.to(device)
    for h in plan.heads:
        h.to(device)
    params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(steps, batch, *shape, generator=g) < 0.15).float().to(device)
    labels = torch.randint(0, 10, (batch,), generator=g).to(device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    with SavedTensorMeter(exclude=params) as meter:
        result = train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=plan.temporal,
                             credit=cfg.credit, window=cfg.credit_window)
    opt.step()
    seconds = time.perf_counter() - t0
    p = param_bytes(params)
    row = {"model": model_name, "method": method, "credit": cfg.credit if plan.temporal else "bptt",
           "window": cfg.credit_window, "K": len(plan.boundaries), "T": steps, "batch": batch,
           "boundaries": [list(b) for b in plan.boundaries],
           "aux_layers": [len(s.aux_source) for s in plan.subnets[:-1]],
           "activation_bytes": meter.peak, "state_bytes": result.state_bytes, "param_bytes": p, "grad_bytes": p,
           "optimizer_bytes": optimizer_bytes(opt), "input_bytes": frames.numel() * frames.element_size(),
           "seconds": seconds}
    row["act_state_bytes"] = row["activation_bytes"] + row["state_bytes"]
    row["total_bytes"] = row["act_state_bytes"] + row["param_bytes"] + row["grad_bytes"] + row["optimizer_bytes"]
    if cuda:
        torch.cuda.synchronize()
        # everything the step allocated on top of what existed before it (model, heads, the batch)
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated() - base
        row["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
    return row


#: temporal credits measured for the decoupled methods at their largest K
CREDITS = ("none", "trace", "window2", "window4")


def configurations(subnets: list[int]) -> list[tuple[str, int]]:
    """(setting, K): bptt; sltt, local and stdl with every credit at the largest K, defaults below it."""
    configs = [("bptt", 1)] + [(f"sltt:{c}", 1) for c in CREDITS]
    for k in subnets:
        if k > 1:
            credits = CREDITS if k == max(subnets) else ("none",)
            configs += [(f"local:{c}", k) for c in credits] + [(f"stdl:{c}", k) for c in credits]
    return configs


def run(models: list[str], steps: list[int], subnets: list[int], batch: int, device: str = "cpu",
        cuda: bool = False, log=print) -> list[dict[str, Any]]:
    rows = []
    for model_name in models:
        for method, k in configurations(subnets):
            for t in steps:
                row = measure(model_name, method, k, t, batch, device, cuda)
                rows.append(row)
                log(f"  {model_name:8} {method:5} K={k} T={t:<3} act {row['activation_bytes'] / 2**20:8.2f} MiB  "
                    f"total {row['total_bytes'] / 2**20:8.2f} MiB  ({row['seconds']:.1f} s)")
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Ratios to bptt at the same model and T, and growth from the smallest to the largest T."""
    ref = {(r["model"], r["T"]): r for r in rows if r["method"] == "bptt"}
    for r in rows:
        b = ref.get((r["model"], r["T"]))
        if b:
            r["act_vs_bptt"] = r["activation_bytes"] / b["activation_bytes"]
            r["act_state_vs_bptt"] = r["act_state_bytes"] / b["act_state_bytes"]
            r["total_vs_bptt"] = r["total_bytes"] / b["total_bytes"]
            if "cuda_peak_bytes" in r and b.get("cuda_peak_bytes"):
                r["cuda_vs_bptt"] = r["cuda_peak_bytes"] / b["cuda_peak_bytes"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"], r["K"]), []).append(r)
    for group in groups.values():
        group.sort(key=lambda r: r["T"])
        lo, hi = group[0], group[-1]
        for r in group:
            r["act_growth_from_T%d" % lo["T"]] = r["activation_bytes"] / lo["activation_bytes"]
            r["act_state_growth_from_T%d" % lo["T"]] = r["act_state_bytes"] / lo["act_state_bytes"]
            r["total_growth_from_T%d" % lo["T"]] = r["total_bytes"] / lo["total_bytes"]
        del hi


def table(rows: list[dict[str, Any]], cuda: bool = False) -> str:
    mib = 2 ** 20
    head = ("| model | setting | K | T | activations MiB | state MiB | act + state / bptt | total MiB | "
            "total / bptt |" + (" CUDA peak MiB | CUDA / bptt |" if cuda else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['model']} | {r['method']} | {r['K']} | {r['T']} | {r['activation_bytes'] / mib:.2f} | "
                f"{r['state_bytes'] / mib:.2f} | {r.get('act_state_vs_bptt', float('nan')):.3f} | "
                f"{r['total_bytes'] / mib:.2f} | {r.get('total_vs_bptt', float('nan')):.3f} |")
        if cuda:
            line += f" {r.get('cuda_peak_bytes', 0) / mib:.2f} | {r.get('cuda_vs_bptt', float('nan')):.3f} |"
        lines.append(line)
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The DESIGN.md targets for every stdl setting at K = 4, checked on every model measured."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        at = {(r["method"], r["K"], r["T"]): r for r in rows if r["model"] == model}
        b8 = at.get(("bptt", 1, 8))
        for setting in dict.fromkeys(r["method"] for r in rows if r["method"].startswith("stdl") and r["K"] == 4):
            s8, s4, s32 = (at.get((setting, 4, t)) for t in (8, 4, 32))
            for key, label in (("act_state_bytes", "activations + state"), ("total_bytes", "total")):
                if s8 and b8:
                    ratio = s8[key] / b8[key]
                    out.append(f"{model}: {setting} K=4 / bptt at T=8, {label}: {ratio:.3f} "
                               f"({'meets' if ratio <= 0.25 else 'misses'} <= 1/4"
                               f"{', reaches 1/10' if ratio <= 0.1 else ''})")
                if s4 and s32:
                    g = s32[key] / s4[key]
                    out.append(f"{model}: {setting} K=4 growth T=4 -> 32, {label}: {g:.3f}x "
                               f"({'meets' if g <= 1.1 else 'misses'} <= 1.1x)")
        b4, b32 = at.get(("bptt", 1, 4)), at.get(("bptt", 1, 32))
        if b4 and b32:
            out.append(f"{model}: bptt growth T=4 -> 32, activations: "
                       f"{b32['activation_bytes'] / b4['activation_bytes']:.2f}x")
    return out


def plot(rows: list[dict[str, Any]], path: Path, key: str = "activation_bytes") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            if r["model"] == model:
                series.setdefault(f"{r['method']} K={r['K']}", []).append((r["T"], r[key] / 2 ** 20))
        for label, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("time steps T")
        ax.set_ylabel(f"peak {'activation' if key == 'activation_bytes' else key} memory (MiB)")
        ax.set_title(model)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def arguments(description: str, out: Path) -> argparse.ArgumentParser:
    """The options this benchmark and ``gpu_memory.py`` share (batch, T, K, models, JSON path)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", default="4,8,16,32")
    ap.add_argument("--subnets", default="1,2,4")
    ap.add_argument("--models", default="dvs-cnn,vgg11")
    ap.add_argument("--out", type=Path, default=out)
    return ap


def main() -> None:
    ap = arguments(__doc__.splitlines()[0], RESULTS / "memory.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="dvs-cnn only, T in {4, 8}")
    args = ap.parse_args()

    import torch

    from stdl_edge.io import write_json

    torch.set_num_threads(args.threads)
    models = ["dvs-cnn"] if args.quick else args.models.split(",")
    steps = [4, 8] if args.quick else ints(args.steps)
    rows = run(models, steps, ints(args.subnets), args.batch)
    print()
    print(table(rows))
    print()
    for line in targets(rows):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"benchmark": "memory", "batch": args.batch, "host": platform.node(),
                          "torch": torch.__version__, "rows": rows, "targets": targets(rows)})
    plot(rows, args.out.with_suffix(".png"))
    plot(rows, args.out.with_name(args.out.stem + "_total.png"), key="total_bytes")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
