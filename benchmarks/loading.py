"""Data loading: samples per second and peak memory of the three ways training reads a data set.

    nice -n 10 .venv/bin/python benchmarks/loading.py [--base 1797] [--events 1000] [--sizes 1,4,16]
                                                      [--repeats 3] [--work DIR]

A folder data set (``folder:PATH``, :mod:`stdl_edge.datasets.folder`) of generated recordings is
written: ``base`` recordings (default 1,797, the size of the bundled digits-dvs) of ``events``
random events each on a 34x34 sensor over 300 ms, 10 classes, as ``.npz`` files, then 4x and 16x as
many. For each loader, one pass over the train split in batches of 32 (the frames a training epoch
reads, no model), binned as digits-dvs is (8 steps of 37.5 ms):

- ``memory``: today's path, the split binned into one uint8 tensor (``materialize``);
- ``stream``: a DataLoader that reads and bins each sample on the fly (:class:`FrameData`);
- ``cache``: a DataLoader over the disk cache of binned frames (built once, then read with pread).

Throughput (1x, workers 0, 1, 2; contenders interleaved, ``repeats`` rounds, median and range of
samples per wall second; the cache is built before the timed passes, the memory path's binning is
timed separately as its load). Peak memory: each (loader, size) runs in a fresh process, and its
peak resident set (``ru_maxrss``, workers 0) over opening the split, building what it needs and one
pass is reported. Writes ``benchmarks/results/loading.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CLASSES = 10
SENSOR = 34
DURATION_US = 300_000
BATCH = 32


def write_folder(root: Path, n: int, events: int, seed: int = 0) -> Path:
    """``n`` recordings in ``root/<class>/<k>.npz`` (skipped when already complete)."""
    import numpy as np

    marker = root / f".complete-{n}-{events}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    for k in range(n):
        x, y = rng.integers(0, SENSOR, events), rng.integers(0, SENSOR, events)
        t, p = np.sort(rng.integers(0, DURATION_US, events)), rng.integers(0, 2, events)
        path = root / f"c{k % CLASSES}" / f"{k:06d}.npz"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # the npz layout write_events writes, without its fsync (a benchmark fixture, written once)
        np.savez(path, x=x.astype(np.int16), y=y.astype(np.int16), t=t, p=p.astype(bool),
                 sensor_size=np.array([SENSOR, SENSOR, 2]))
    marker.write_text("")
    return root


def _open(root: Path, mode: str, workers: int):
    """The train split of ``folder:root`` as the trainer would batch it with loader ``mode``."""
    from stdl_edge.data import load_dataset, materialize
    from stdl_edge.datasets.loader import FrameData

    ds = load_dataset(f"folder:{root}", "train", num_steps=8, dt_us=37_500)
    if mode == "memory":
        return materialize(ds)
    return FrameData(ds.samples, ds.stream, mode=mode, workers=workers)


def one_pass(data) -> int:
    n = 0
    for x, _ in data.batches(BATCH):
        n += x.shape[1]
    return n


def child(root: Path, mode: str) -> None:
    """Fresh process: open (and build) ``mode`` over ``root``, one pass; print peak RSS and counts."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = _open(root, mode, 0)
    t1 = time.perf_counter()
    n = one_pass(data)
    t2 = time.perf_counter()
    # VmHWM: this process's own peak (ru_maxrss would keep the parent's across exec on Linux)
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    print(json.dumps({"mode": mode, "samples": n, "open_s": t1 - t0, "pass_s": t2 - t1, "peak_rss": peak}))


def throughput(root: Path, repeats: int) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    contenders = [("memory", 0)] + [(m, w) for m in ("stream", "cache") for w in (0, 1, 2)]
    t0 = time.perf_counter()
    opened = {c: _open(root, *c) for c in contenders}  # builds the cache once (timed below separately)
    open_s = time.perf_counter() - t0
    times: dict[tuple[str, int], list[float]] = {c: [] for c in contenders}
    n = len(opened[contenders[0]])
    for _ in range(repeats):
        for c in contenders:
            t = time.perf_counter()
            one_pass(opened[c])
            times[c].append(time.perf_counter() - t)
    rows = []
    for (mode, workers), ts in times.items():
        rates = [n / t for t in ts]
        rows.append({"loader": mode, "workers": workers, "samples": n, "median_samples_per_s": statistics.median(rates),
                     "min": min(rates), "max": max(rates)})
    print(f"(opening all contenders, incl. binning the memory split and building the cache: {open_s:.1f} s)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=1797)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/stdl-edge-loading-bench"))
    ap.add_argument("--memory-only", action="store_true",
                    help="skip the throughput table (keep the one in loading.json)")
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    os.environ.setdefault("STDL_EDGE_CACHE", str(args.work / "cache"))
    sizes = [int(s) for s in args.sizes.split(",")]
    roots = {k: write_folder(args.work / f"x{k}", args.base * k, args.events) for k in sizes}

    if args.memory_only:
        rows = json.loads((RESULTS / "loading.json").read_text())["throughput"]
    else:
        rows = throughput(roots[sizes[0]], args.repeats)
    print(f"\nthroughput, {sizes[0]}x ({rows[0]['samples']} train samples), batches of {BATCH}, samples per second "
          f"(median of {args.repeats}, range)")
    print(f"{'loader':<8} {'workers':>7} {'samples/s':>10} {'range':>17}")
    for r in rows:
        print(f"{r['loader']:<8} {r['workers']:>7} {r['median_samples_per_s']:>10.0f} "
              f"{r['min']:>8.0f}-{r['max']:<8.0f}")

    memory = []
    for k in sizes:
        for mode in ("memory", "stream", "cache"):
            out = subprocess.run([sys.executable, __file__, "--child", str(roots[k]), mode], check=True,
                                 capture_output=True, text=True, env=os.environ).stdout
            rec = json.loads(out.strip().splitlines()[-1])
            rec["size"] = k
            memory.append(rec)
    print("\npeak resident memory (fresh process: open + build + one pass, workers 0), MiB")
    print(f"{'size':>5} {'train samples':>13} " + " ".join(f"{m:>10}" for m in ("memory", "stream", "cache")))
    for k in sizes:
        recs = {r["mode"]: r for r in memory if r["size"] == k}
        print(f"{k:>4}x {recs['memory']['samples']:>13} "
              + " ".join(f"{recs[m]['peak_rss'] / 2 ** 20:>10.0f}" for m in ("memory", "stream", "cache")))
    RESULTS.mkdir(exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load": os.getloadavg(), "base": args.base, "events": args.events,
              "throughput": rows, "memory": memory}
    (RESULTS / "loading.json").write_text(json.dumps(result, indent=1))
    print(f"\nwrote {RESULTS / 'loading.json'}")


if __name__ == "__main__":
    main()
