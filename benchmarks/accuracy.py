"""Test accuracy of bptt, sltt, local and stdl with each temporal credit, same epochs and seeds.

    .venv/bin/python benchmarks/accuracy.py [--datasets digits-dvs,shapes-dvs] [--seeds 0]
        [--epochs 6] [--limit N] [--subnets 4] [--model dvs-cnn] [--resume]
        [--methods bptt,sltt,sltt:window2,local,local:trace,local:window2,stdl,stdl:trace,stdl:window2]

A method is ``name[:credit]``, credit ``none``, ``trace`` or ``windowW`` (``--temporal-credit``
and ``--window``); a bare name trains with its default (``TrainConfig``). Every setting trains
the same model (``--model``, default dvs-cnn; same initial weights per seed) on the same data in the same order,
with the same epochs, batch size and learning rate, through the one trainer
(``stdl_edge.stdl.trainer.train``). Runs go seed by seed (both data sets, every setting), so a
partial result has every setting at the seeds done; the JSON is rewritten after every run and
``--resume`` skips the runs it already holds. Reported per data set and setting: mean, min and
max of the final test accuracy, the mean test-accuracy curve (convergence), each early exit,
and the peak training memory (saved tensors + carried state). Epoch times are CPU seconds;
the interleaved time per batch lives in ``benchmarks/timing.py``. Writes
``benchmarks/results/accuracy.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def parse_setting(text: str) -> dict[str, Any]:
    """``'stdl:window2'`` -> ``{'method': 'stdl', 'temporal_credit': 'window', 'window': 2}``."""
    method, _, credit = text.partition(":")
    out: dict[str, Any] = {"method": method}
    if credit.startswith("window"):
        out.update(temporal_credit="window", window=int(credit[6:] or 2))
    elif credit:
        out["temporal_credit"] = credit
    return out


def train_epochs(cfg, train_data, test_data) -> list[dict[str, Any]]:
    """The trainer's epochs (``build_state``, ``run_epoch``, ``evaluate``: what ``train`` runs)
    without its per-epoch files (checkpoint, plots), which would only add time here."""
    import math
    import time

    import torch

    from stdl_edge.stdl.trainer import build_state, evaluate, resolve_device, run_epoch

    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads or 1)
    num_classes = int(max(train_data.labels.max(), test_data.labels.max())) + 1
    state = build_state(cfg, tuple(int(v) for v in train_data.frames.shape[2:]), num_classes,
                        math.ceil(len(train_data) / cfg.batch_size), device)
    history = []
    for epoch in range(cfg.epochs):
        t0 = time.process_time()
        _, _, _, memory = run_epoch(state, train_data, cfg, device, epoch)
        test_acc, exit_acc, _ = evaluate(state.model, state.heads, state.plan.boundaries, test_data, device)
        history.append({"test_acc": test_acc, "exit_acc": exit_acc, "memory": memory.to_dict(),
                        "epoch_time_s": time.process_time() - t0, "K": len(state.plan.boundaries)})
    return history


def run(datasets: list[str], settings: list[str], seeds: list[int], epochs: int, subnets: int,
        limit: int | None, batch: int, lr: float | None, log=print, on_row=None,
        done: list[dict[str, Any]] = (), model: str = "dvs-cnn") -> list[dict[str, Any]]:
    """Train every (seed, data set, setting); ``on_row(rows)`` after each run (partial results)."""
    from stdl_edge.stdl.trainer import TrainConfig, load_split

    rows = list(done)
    have = {(r["dataset"], r["setting"], r["seed"]) for r in rows}
    data = {}
    for dataset in datasets:
        base = TrainConfig(dataset=dataset, model=model, epochs=epochs, limit=limit, batch_size=batch)
        train_data, stream = load_split(base, "train")
        test_data, _ = load_split(base, "test")
        data[dataset] = (base if lr is None else base.replace(lr=lr), (train_data, test_data, stream))
        log(f"{dataset}: {len(train_data)} train / {len(test_data)} test samples, T={stream.num_steps}")
    for seed in seeds:
        for dataset in datasets:
            base, split = data[dataset]
            for setting in settings:
                if (dataset, setting, seed) in have:
                    continue
                options = parse_setting(setting)
                cfg = base.replace(seed=seed, subnets=subnets if options["method"] in ("stdl", "local") else 1,
                                   **options)
                history = train_epochs(cfg, *split[:2])
                last = history[-1]
                row = {"dataset": dataset, "setting": setting, "method": cfg.method,
                       "temporal_credit": cfg.credit if cfg.method != "bptt" else None,
                       "window": cfg.credit_window, "seed": seed, "K": last["K"], "epochs": epochs,
                       "test_acc": last["test_acc"], "exit_acc": last["exit_acc"],
                       "epoch_time_s": statistics.mean(h["epoch_time_s"] for h in history),
                       "activation_bytes": last["memory"]["activation_bytes"],
                       "state_bytes": last["memory"]["state_bytes"], "total_bytes": last["memory"]["total_bytes"],
                       "curve": [h["test_acc"] for h in history], "exit_curves": [h["exit_acc"] for h in history]}
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
                exits = " ".join(f"{a * 100:.1f}" for a in row["exit_acc"])
                log(f"  seed {seed} {dataset} {setting:14}: test {row['test_acc'] * 100:5.1f}%  exits [{exits}]  "
                    f"{row['epoch_time_s']:.1f} s/epoch", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/min/max over seeds per (dataset, setting), the mean curve and the mean of each exit;
    memory from the setting's latest run (a resumed file may hold rows of an older engine)."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for setting in dict.fromkeys(r["setting"] for r in rows if r["dataset"] == dataset):
            rs = [r for r in rows if r["dataset"] == dataset and r["setting"] == setting]
            accs = [r["test_acc"] for r in rs]
            exits = [statistics.mean(e) for e in zip(*[r["exit_acc"] for r in rs])] if rs[0]["exit_acc"] else []
            out.append({"dataset": dataset, "setting": setting, "K": rs[0]["K"], "seeds": len(rs),
                        "test_acc_mean": statistics.mean(accs), "test_acc_min": min(accs),
                        "test_acc_max": max(accs), "exit_acc_mean": exits,
                        "curve_mean": [statistics.mean(v) for v in zip(*[r["curve"] for r in rs])],
                        "epoch_time_s": statistics.mean(r["epoch_time_s"] for r in rs),
                        "activation_bytes": rs[-1]["activation_bytes"], "state_bytes": rs[-1]["state_bytes"],
                        "total_bytes": rs[-1]["total_bytes"]})
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = ("| data set | setting | K | seeds | test acc % (mean [min, max]) | curve % (mean per epoch) | "
            "early exits % | act + state MiB | total MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        exits = ", ".join(f"{a * 100:.1f}" for a in s["exit_acc_mean"]) or "-"
        curve = " ".join(f"{a * 100:.0f}" for a in s["curve_mean"])
        lines.append(f"| {s['dataset']} | {s['setting']} | {s['K']} | {s['seeds']} | "
                     f"{s['test_acc_mean'] * 100:.1f} [{s['test_acc_min'] * 100:.1f}, {s['test_acc_max'] * 100:.1f}] | "
                     f"{curve} | {exits} | {(s['activation_bytes'] + s['state_bytes']) / 2**20:.2f} | "
                     f"{s['total_bytes'] / 2**20:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for setting in dict.fromkeys(r["setting"] for r in rows):
            rs = [r for r in rows if r["dataset"] == dataset and r["setting"] == setting]
            if not rs:
                continue
            curve = [statistics.mean(v) for v in zip(*[r["curve"] for r in rs])]
            ax.plot(range(1, len(curve) + 1), [c * 100 for c in curve], marker="o", label=setting)
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
    ap.add_argument("--methods", default="bptt,sltt,sltt:window2,local,local:trace,local:window2,"
                    "stdl:none,stdl:trace,stdl:window2",
                    help="comma-separated name[:none|trace|windowW] (see the module docstring)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (docs/results.md: 0,1,2,3,4)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--subnets", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="balanced subset of about N samples per data set")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--model", default="dvs-cnn", help="the zoo model every setting trains (e.g. dvs-crnn)")
    ap.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    ap.add_argument("--resume", action="store_true", help="keep the runs --out already holds and add the rest")
    args = ap.parse_args()
    import torch

    from stdl_edge.io import write_json

    torch.set_num_threads(1)  # as the trainer does on CPU
    seeds = [int(s) for s in args.seeds.split(",") if s]
    settings = args.methods.split(",")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(args.out.read_text())["rows"] if args.resume and args.out.exists() else []

    def save(rows: list[dict[str, Any]], complete: bool = False) -> None:
        write_json(args.out, {"benchmark": "accuracy", "model": args.model, "epochs": args.epochs, "seeds": seeds,
                              "settings": settings, "limit": args.limit, "batch": args.batch,
                              "host": platform.node(), "torch": torch.__version__, "threads": 1,
                              "complete": complete, "rows": rows, "summary": summarize(rows)})

    rows = run(args.datasets.split(","), settings, seeds, args.epochs, args.subnets, args.limit,
               args.batch, args.lr, on_row=save, done=done, model=args.model)
    save(rows, complete=True)
    print()
    print(table(summarize(rows)))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
