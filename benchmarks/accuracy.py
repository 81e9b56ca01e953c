"""Test accuracy of stdl, local, sltt and bptt on the bundled data sets, same epochs and seeds.

    .venv/bin/python benchmarks/accuracy.py [--datasets digits-dvs,shapes-dvs] [--seeds 0]
        [--epochs 4] [--limit N] [--methods stdl,local,sltt,bptt] [--subnets 4]

Every method trains the same model (dvs-cnn, same initial weights), on the same data in
the same order (seeded), with the same epochs, batch size and learning rate, through the
one trainer (``stdl_edge.stdl.trainer.train``). Reported per data set and method: mean and
spread of the final test accuracy over the seeds, the accuracy of each early exit (stdl,
local), the training time per epoch and its ratio to bptt measured in the same run, and
the peak training memory. Defaults fit ~15-20 minutes on a 2-core CPU; raise ``--epochs``
and ``--seeds`` for tighter numbers. Writes ``benchmarks/results/accuracy.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def run(datasets: list[str], methods: list[str], seeds: list[int], epochs: int, subnets: int,
        limit: int | None, batch: int, lr: float | None, log=print,
        on_row=None) -> list[dict[str, Any]]:
    """Train every (data set, seed, method); ``on_row(rows)`` after each run (partial results)."""
    from stdl_edge.stdl.trainer import TrainConfig, load_split, train

    rows = []
    for dataset in datasets:
        base = TrainConfig(dataset=dataset, epochs=epochs, limit=limit, batch_size=batch)
        if lr is not None:
            base = base.replace(lr=lr)
        train_data, stream = load_split(base, "train")
        test_data, _ = load_split(base, "test")
        log(f"{dataset}: {len(train_data)} train / {len(test_data)} test samples, T={stream.num_steps}")
        for seed in seeds:
            for method in methods:
                cfg = base.replace(method=method, seed=seed,
                                   subnets=subnets if method in ("stdl", "local") else 1)
                with tempfile.TemporaryDirectory() as tmp:
                    result = train(cfg, Path(tmp) / "run", data=(train_data, test_data, stream))
                times = [h["epoch_time_s"] for h in result.history]
                row = {"dataset": dataset, "method": method, "seed": seed, "K": len(result.plan["boundaries"]),
                       "epochs": epochs, "test_acc": result.test_acc, "exit_acc": result.exit_acc,
                       "epoch_time_s": statistics.mean(times), "activation_bytes": result.memory["activation_bytes"],
                       "total_bytes": result.memory["total_bytes"],
                       "curve": [h["test_acc"] for h in result.history]}
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
                exits = " ".join(f"{a * 100:.1f}" for a in row["exit_acc"])
                log(f"  seed {seed} {method:5}: test {row['test_acc'] * 100:5.1f}%  exits [{exits}]  "
                    f"{row['epoch_time_s']:.1f} s/epoch")
    return rows


def interleaved_batch_times(methods: list[str], subnets: int, input_shape: tuple[int, int, int], steps: int,
                            batch: int, rounds: int = 7) -> dict[str, float]:
    """Median seconds of one training batch (train_batch + Adam step) per method, the methods
    taking turns every round, so a change in machine load hits all of them alike."""
    import statistics
    import time

    import torch

    from stdl_edge.models import ModelConfig, build_model
    from stdl_edge.stdl.auxiliary import make_plan
    from stdl_edge.stdl.engine import train_batch

    setups = {}
    for method in methods:
        model = build_model(ModelConfig(input_shape=input_shape, num_classes=10), seed=0)
        plan = make_plan(model, method, subnets if method in ("stdl", "local") else 1, batch=batch)
        params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
        setups[method] = (model, plan, torch.optim.Adam(params, lr=1e-3))
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(steps, batch, *input_shape, generator=g) < 0.15).float()
    labels = torch.randint(0, 10, (batch,), generator=g)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(rounds + 1):
        for method, (model, plan, opt) in setups.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=plan.temporal)
            opt.step()
            if r:  # round 0 warms up
                times[method].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/min/max over seeds per (dataset, method); time ratio to bptt of the same seeds."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        bptt_time = [r["epoch_time_s"] for r in rows if r["dataset"] == dataset and r["method"] == "bptt"]
        for method in dict.fromkeys(r["method"] for r in rows if r["dataset"] == dataset):
            rs = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            accs = [r["test_acc"] for r in rs]
            exits = [statistics.mean(e) for e in zip(*[r["exit_acc"] for r in rs])] if rs[0]["exit_acc"] else []
            t = statistics.mean(r["epoch_time_s"] for r in rs)
            out.append({"dataset": dataset, "method": method, "K": rs[0]["K"], "seeds": len(rs),
                        "test_acc_mean": statistics.mean(accs), "test_acc_min": min(accs),
                        "test_acc_max": max(accs), "exit_acc_mean": exits, "epoch_time_s": t,
                        "time_vs_bptt": t / statistics.mean(bptt_time) if bptt_time else None,
                        "activation_bytes": rs[0]["activation_bytes"], "total_bytes": rs[0]["total_bytes"]})
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = ("| data set | method | K | seeds | test acc % (mean [min, max]) | early exits % | s / epoch | "
            "time / bptt | act MiB | total MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        exits = ", ".join(f"{a * 100:.1f}" for a in s["exit_acc_mean"]) or "-"
        ratio = f"{s['time_vs_bptt']:.2f}" if s["time_vs_bptt"] is not None else "-"
        lines.append(f"| {s['dataset']} | {s['method']} | {s['K']} | {s['seeds']} | "
                     f"{s['test_acc_mean'] * 100:.1f} [{s['test_acc_min'] * 100:.1f}, {s['test_acc_max'] * 100:.1f}] | "
                     f"{exits} | {s['epoch_time_s']:.1f} | {ratio} | {s['activation_bytes'] / 2**20:.2f} | "
                     f"{s['total_bytes'] / 2**20:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for method in dict.fromkeys(r["method"] for r in rows):
            rs = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            if not rs:
                continue
            curve = [statistics.mean(v) for v in zip(*[r["curve"] for r in rs])]
            ax.plot(range(1, len(curve) + 1), [c * 100 for c in curve], marker="o", label=method)
        ax.set_title(dataset)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy % (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits-dvs,shapes-dvs")
    ap.add_argument("--methods", default="stdl,local,sltt,bptt")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--subnets", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="balanced subset of about N samples per data set")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the interleaved per-batch timing (no training); seconds")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # as the trainer does on CPU
    if args.timing_only:
        print_timing(args.methods.split(","), args.subnets, args.batch)
        return

    from stdl_edge.io import write_json

    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows: list[dict[str, Any]], complete: bool = False) -> None:
        write_json(args.out, {"benchmark": "accuracy", "model": "dvs-cnn", "epochs": args.epochs, "seeds": seeds,
                              "limit": args.limit, "batch": args.batch, "host": platform.node(),
                              "torch": torch.__version__, "threads": 1, "complete": complete, "rows": rows,
                              "summary": summarize(rows)})

    rows = run(args.datasets.split(","), args.methods.split(","), seeds, args.epochs, args.subnets, args.limit,
               args.batch, args.lr, on_row=save)
    save(rows, complete=True)
    print()
    print(table(summarize(rows)))
    print_timing(args.methods.split(","), args.subnets, args.batch)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def print_timing(methods: list[str], subnets: int, batch: int) -> dict[str, float]:
    """Per-batch time of each method relative to bptt, interleaved (dvs-cnn, 2x34x34, T = 8)."""
    times = interleaved_batch_times(methods, subnets, (2, 34, 34), 8, batch)
    print()
    print("| method | s / batch (median, interleaved) | / bptt |")
    print("|---|---|---|")
    for m, t in times.items():
        ratio = f"{t / times['bptt']:.2f}" if "bptt" in times else "-"
        print(f"| {m} | {t:.3f} | {ratio} |")
    return times


if __name__ == "__main__":
    main()
