"""Training throughput and per-rank memory: one process vs 2-way data parallel vs a 2-stage pipeline.

    .venv/bin/python benchmarks/distributed.py [--models dvs-cnn,vgg11] [--steps 8] [--batch 32]
                                               [--batches 6] [--epochs 3] [--rounds 2]

Each contender is launched as real processes on this machine (gloo, one torch thread each,
the environment torchrun gives) running the trainer's own epoch loop
(:func:`stdl_edge.stdl.trainer.run_epoch` with :class:`~stdl_edge.stdl.distributed.Ranks`)
over random binary frames (15 % density) with STDL, K = 4:

- ``1 process``: the whole batch of ``--batch`` samples;
- ``2-way DP``: 2 replicas of ``--batch / 2`` samples, one gradient all-reduce per batch;
- ``2-stage pipeline``: 2 stages of 2 subnetworks each (grouped by memory), the whole batch,
  stage 0 sending its (T, B, ...) outputs to stage 1 once per batch.

Per contender: samples per second over an epoch (wall, after a warm-up epoch; median over
the timed epochs and the rounds; the contenders take turns within a round), CPU seconds per
rank, and each rank's peak training memory (saved-tensor activations + parameters +
gradients + Adam moments, exact). For data parallel it also times the bucketed gradient
all-reduce itself: once per batch (what the trainer does) against the ``T x K`` reductions
per batch a per-backward all-reduce (DDP without ``no_sync``) would make. Writes
``benchmarks/results/distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
#: (arch, width, input shape), as in benchmarks/memory.py
MODELS = {"dvs-cnn": ("dvs-cnn", 1.0, (2, 34, 34)), "vgg11": ("vgg11", 0.5, (2, 32, 32))}
MODES = {"1 process": (1, 1), "2-way DP": (2, 1), "2-stage pipeline": (2, 2)}  # (world, pipeline)


def worker(model: str, pipeline: int, steps: int, batch: int, batches: int, epochs: int) -> None:
    """One rank: time ``epochs`` epochs of the trainer's loop (the first is a warm-up); rank 0
    prints the JSON result."""
    import torch
    import torch.distributed as dist

    from stdl_edge.data import TensorData
    from stdl_edge.stdl.distributed import setup, teardown
    from stdl_edge.stdl.trainer import TrainConfig, build_state, run_epoch

    torch.set_num_threads(1)
    arch, width, shape = MODELS[model]
    device = torch.device("cpu")
    config = TrainConfig(model=arch, width=width, method="stdl", subnets=4, batch_size=batch, steps=steps,
                         epochs=epochs, device="cpu", pipeline=pipeline, seed=0)
    ranks = setup(device, pipeline, 600.0)
    try:
        g = torch.Generator().manual_seed(0)
        n = batch * batches
        data = TensorData((torch.rand(n, steps, *shape, generator=g) < 0.15).to(torch.uint8),
                          torch.randint(0, 10, (n,), generator=g))
        state = build_state(config, shape, 10, batches, device)
        ranks.start(state)
        walls, cpus = [], []
        for epoch in range(epochs):
            ranks.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            *_, memory = run_epoch(state, data, config, device, epoch, ranks=ranks)
            ranks.barrier()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        peak, per_rank = ranks.memory(memory, state)
        allreduce_ms = None
        if ranks.distributed and ranks.layout.replicas > 1:
            modules = [state.model, *state.heads]
            runs = []
            for _ in range(10):
                t0 = time.perf_counter()
                ranks.reduce_gradients(modules, 1, 1)
                runs.append(time.perf_counter() - t0)
            allreduce_ms = statistics.median(runs) * 1e3
        mine = torch.tensor(walls + cpus, dtype=torch.float64)
        every = [mine]
        if ranks.distributed:
            every = [torch.zeros_like(mine) for _ in range(ranks.layout.world)]
            dist.all_gather(every, mine)
        if ranks.writer:
            timed = slice(1, epochs)
            wall = [max(float(t[i]) for t in every) for i in range(epochs)][timed]  # the slowest rank
            print(json.dumps({
                "samples_per_s": [n / w for w in wall], "epoch_wall_s": wall,
                "cpu_s_per_rank": [statistics.median(float(v) for v in t[epochs:][timed]) for t in every],
                "memory_per_rank": per_rank or [peak.to_dict()], "allreduce_ms": allreduce_ms,
                "backward_calls_per_batch": steps * len(state.plan.boundaries),
            }))
    finally:
        teardown(ranks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(model: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one contender as its processes; rank 0's JSON result."""
    world, pipeline = MODES[mode]
    command = [sys.executable, __file__, "--worker", model, str(pipeline), str(args.steps), str(args.batch),
               str(args.batches), str(args.epochs)]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world))
    procs = [subprocess.Popen(command, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              text=True) for r in range(world)]
    try:
        outs = [p.communicate(timeout=1800)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise SystemExit(f"{model} / {mode}: a rank failed (exit codes {[p.returncode for p in procs]})")
    return json.loads(outs[0].strip().splitlines()[-1])


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.2f}"


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        model, *numbers = sys.argv[2:]
        worker(model, *map(int, numbers))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="dvs-cnn,vgg11")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=6, help="batches per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per launch; the first is a warm-up")
    ap.add_argument("--rounds", type=int, default=2, help="launches of every contender, taking turns")
    args = ap.parse_args()
    models = args.models.split(",")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    load = [os.getloadavg()[0]]
    t0 = time.time()
    for _ in range(args.rounds):
        for model in models:
            for mode in MODES:
                runs.setdefault((model, mode), []).append(launch(model, mode, args))
                load.append(os.getloadavg()[0])
    rows = []
    print(f"\nSTDL K = 4, T = {args.steps}, global batch {args.batch}, {args.batches} batches / epoch, gloo on CPU, "
          f"1 thread per rank; load {min(load):.1f}-{max(load):.1f}\n")
    print("| model | contender | samples/s median [range] | CPU s / epoch per rank | per-rank memory MiB "
          "(act / total) |")
    print("|---|---|---|---|---|")
    for (model, mode), results in runs.items():
        rates = [r for res in results for r in res["samples_per_s"]]
        cpu = [statistics.median(res["cpu_s_per_rank"][i] for res in results)
               for i in range(len(results[0]["cpu_s_per_rank"]))]
        mem = results[-1]["memory_per_rank"]
        row = {"model": model, "contender": mode, "samples_per_s": rates, "median": statistics.median(rates),
               "cpu_s_per_rank": cpu, "memory_per_rank": mem, "allreduce_ms": results[-1]["allreduce_ms"],
               "backward_calls_per_batch": results[-1]["backward_calls_per_batch"]}
        rows.append(row)
        print(f"| {model} | {mode} | {row['median']:.1f} [{min(rates):.1f}, {max(rates):.1f}] | "
              f"{' / '.join(f'{c:.2f}' for c in cpu)} | "
              f"{' ; '.join(_mib(m['activation_bytes']) + ' / ' + _mib(m['total_bytes']) for m in mem)} |")
    print("\n| model | gradient all-reduce, ms | per batch (trainer) | per backward (T x K calls) |")
    print("|---|---|---|---|")
    for row in rows:
        if row["allreduce_ms"] is not None:
            ms, calls = row["allreduce_ms"], row["backward_calls_per_batch"]
            print(f"| {row['model']} | {ms:.2f} | {ms:.2f} | {ms * calls:.1f} ({calls} calls) |")
    RESULTS.mkdir(exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load": load, "args": vars(args), "rows": rows}
    from stdl_edge.io import write_json

    write_json(RESULTS / "distributed.json", record)
    print(f"\nwrote {RESULTS / 'distributed.json'}")


if __name__ == "__main__":
    main()
