"""loihi-sim speed at every size: load time, wall/CPU time per step (batch 1), batch throughput per
core, and Lava's time per step on the same netx file and input (``Loihi2SimCfg(select_tag='fixed_pt')``
through ``devices.lava_device``), with the readouts checked identical. loihi-sim is timed stepping
(``step()`` per frame) and on whole windows (``run_frames``, what classify, verify and ``run``
use, and what Lava is timed on). Target: >= 100x Lava per
step, load < 0.5 s, a batch of 64 >= 10x the single-stream throughput.

Networks (``--networks``, comma-separated):

* ``dvs-cnn``: our dvs-cnn at 2 x 34 x 34 (3 strided convs, dense 128, readout), exported by
  stdl-edge's netx exporter from fresh weights (or ``--run``);
* ``dvs-cnn-128``: the same architecture at 2 x 128 x 128;
* ``pilotnet``: PilotNet-sized, 3 x 66 x 200 -> 5 convs (24/36/48 5x5 stride 2, 64/64 3x3) -> dense
  100, 50, 10, 1, random integer weights in netx's range, written with h5py in netx's layout.

Input: Bernoulli spike frames (``--density``). Load is file to first step done, in a process that
has already imported stdl-edge and torch (median of 3); "cold window" is file to the first whole
window done in a fresh process (imports not timed), which includes numba's start (about a
second, once a process) where the window is big enough for the compiled neuron kernel, and the
same with ``STDL_EDGE_NO_NUMBA=1`` (numpy alone). loihi-sim runs on one core (BLAS and torch threads 1).
Lava is timed on whole samples of two lengths: total per step (start, compile, teardown included)
and the marginal cost of one more step (the difference), the fair steady-state comparison; both
are divided by loihi-sim's wall time per step (batch 1). On a shared machine the wall clock
depends on the load, so CPU time is reported too: this process's plus its finished children's
(Lava's worker processes), marginal per step, against loihi-sim's CPU time per step.

    .venv/bin/python benchmarks/loihi_sim.py            # writes benchmarks/results/loihi_sim.json
    .venv/bin/python benchmarks/loihi_sim.py --quick --networks pilotnet
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("dvs-cnn", "dvs-cnn-128", "pilotnet")


def _dvs_cnn(run: str | None, work: Path, size: int) -> Path:
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.exporters.netx import export
    from stdl_edge.models import ModelConfig, build_model

    if run is not None:
        out = work / "netx"
        export(run, out, subnets=False, aux=False)
        return out / "model.net"
    model = build_model(ModelConfig(arch="dvs-cnn", input_shape=(2, size, size), num_classes=10), seed=0).eval()
    save_model(work / "run", model, StreamInfo((size, size, 2), 1000, 16))
    export(work / "run", subnets=False, aux=False)
    return work / "run" / "export" / "netx" / "model.net"


def _pilotnet(work: Path) -> Path:
    """A PilotNet-sized netx file: random weights in netx's range, thresholds for moderate activity."""
    import h5py

    rng = np.random.default_rng(0)
    path = work / "pilotnet.net"

    def text(g, key: str, value: str) -> None:
        g.create_dataset(key, (1,), "S10", [value.encode("ascii")])

    def neuron(g, vth: int) -> None:
        n = g.create_group("neuron")
        text(n, "type", "CUBA")
        for key, val in (("iDecay", 1024), ("vDecay", 512), ("vThMant", vth), ("refDelay", 1)):
            n.create_dataset(key, data=np.int64(val))
        n.create_dataset("gradedSpike", data=np.bool_(False))

    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        text(g, "type", "input")
        g.create_dataset("shape", data=np.array([3, 66, 200]))
        shape, i = (3, 66, 200), 1
        for out, k, stride in ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)):
            c, h, w = shape
            shape = (out, (h - k) // stride + 1, (w - k) // stride + 1)
            g = f.create_group(f"layer/{i}")
            text(g, "type", "conv")
            g.create_dataset("shape", data=np.array(shape))
            g.create_dataset("weight", data=rng.integers(-100, 128, (out, c, k, k)))
            for key, val in (("stride", stride), ("padding", 0), ("dilation", 1)):
                g.create_dataset(key, data=np.array([val, val]))
            g.create_dataset("groups", data=np.int64(1))
            neuron(g, 3 * k * k * c)
            i += 1
        g = f.create_group(f"layer/{i}")
        text(g, "type", "flatten")
        g.create_dataset("shape", data=np.array([int(np.prod(shape))]))
        n_in, i = int(np.prod(shape)), i + 1
        for out in (100, 50, 10, 1):
            g = f.create_group(f"layer/{i}")
            text(g, "type", "dense")
            g.create_dataset("shape", data=np.array([out]))
            g.create_dataset("weight", data=rng.integers(-100, 128, (out, n_in)) * 2)
            neuron(g, 4 * n_in)
            n_in, i = out, i + 1
    return path


def _one_core():
    """One BLAS thread (threadpoolctl) for loihi-sim; torch's threads are set to 1 in main()."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _time_steps(sim, frames: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median wall ms per step and mean CPU ms per step (this process) over ``repeats`` runs, after
    an untimed step (a first call loads numba's code: the cold column's business)."""
    times = []
    with _one_core():
        sim.reset(frames.shape[1])
        sim.step(frames[0])
        cpu0 = time.process_time()
        for _ in range(repeats):
            sim.reset(frames.shape[1])
            for frame in frames:
                t0 = time.perf_counter()
                sim.step(frame)
                times.append(time.perf_counter() - t0)
    cpu = 1e3 * (time.process_time() - cpu0) / max(len(times), 1)
    return 1e3 * float(np.median(times)), cpu


def _time_window(sim, frames: np.ndarray, repeats: int) -> tuple[float, float]:
    """The same per step for whole windows (``run_frames``: what classify and ``stdl-edge run`` do,
    layer by layer with each synapse once per chunk): median wall ms and mean CPU ms per step,
    the latency steps it also runs counted."""
    times = []
    steps = len(frames) + sim.latency
    with _one_core():
        sim.run_frames(frames)  # untimed: a first call loads numba's code
        cpu0 = time.process_time()
        for _ in range(repeats):
            t0 = time.perf_counter()
            sim.run_frames(frames)
            times.append((time.perf_counter() - t0) / steps)
    return 1e3 * float(np.median(times)), 1e3 * (time.process_time() - cpu0) / (repeats * steps)


def _load_s(path: Path, repeats: int = 3) -> float:
    """Median seconds from the file to the first step done (batch 1)."""
    from stdl_edge.devices.loihi_sim import LoihiSim

    times = []
    with _one_core():
        for _ in range(repeats):
            t0 = time.perf_counter()
            sim = LoihiSim.from_netx(path)
            sim.reset(1)
            sim.step(np.zeros((1, *sim.input_shape), np.float32))
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


_COLD = """
import sys, time
import numpy as np, torch
from stdl_edge.devices.loihi_sim import LoihiSim
torch.set_num_threads(1)
t0 = time.perf_counter()
sim = LoihiSim.from_netx(sys.argv[1])
sim.run_frames(np.zeros((int(sys.argv[2]), 1, *sim.input_shape), np.float32))
print(time.perf_counter() - t0)
"""


def _cold_window_s(path: Path, steps: int, numba: bool = True) -> float:
    """Seconds from the file to the first window of ``steps`` done in a fresh process that has
    imported stdl-edge and torch (not timed): what the first window of ``stdl-edge run`` waits,
    numba's start (its import, code cache and LLVM, about a second) included where the window's
    layers are big enough for the compiled neuron kernel."""
    out = subprocess.run([sys.executable, "-c", _COLD, str(path), str(steps)], capture_output=True, text=True,
                         check=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **({} if numba else {"STDL_EDGE_NO_NUMBA": "1"})})
    return float(out.stdout.strip().splitlines()[-1])


def bench(name: str, path: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    from stdl_edge.devices.loihi_sim import LoihiSim

    sim = LoihiSim.from_netx(path)
    shape = sim.input_shape
    f1 = (rng.random((args.steps, 1, *shape)) < args.density).astype(np.float32)
    fb = (rng.random((max(args.steps // 4, 2), args.batch, *shape)) < args.density).astype(np.float32)
    load = _load_s(path)
    cold = _cold_window_s(path, args.steps)
    cold_numpy = _cold_window_s(path, args.steps, numba=False)
    step1, cpu1 = _time_steps(sim, f1, args.repeats)
    stepb, cpub = _time_steps(sim, fb, max(args.repeats // 2, 1))
    row = {"network": name, "input_shape": list(shape), "latency": sim.latency,
           "layers": [f"{la.kind} {tuple(la.out_shape)}" for la in sim.net.layers],
           "load_s": load, "cold_first_window_s": cold, "cold_first_window_no_numba_s": cold_numpy,
           "ms_per_step_batch1": step1, "cpu_ms_per_step_batch1": cpu1,
           "batch": args.batch, "ms_per_step_batch": stepb, "cpu_ms_per_step_batch": cpub,
           "batch_gain_per_core": (args.batch * cpu1) / cpub}
    win1, wcpu1 = _time_window(sim, f1, args.repeats)
    _, wcpub = _time_window(sim, fb, max(args.repeats // 2, 1))
    row.update(window_ms_per_step_batch1=win1, window_cpu_ms_per_step_batch1=wcpu1, window_cpu_ms_per_step_batch=wcpub,
               window_batch_gain_per_core=(args.batch * wcpu1) / wcpub)
    if not args.no_lava:
        row["lava"] = _lava(path, f1[: args.lava_steps], sim, args, rng)
        if "ms_per_step_marginal" in row["lava"]:
            row["speedup_marginal"] = row["lava"]["ms_per_step_marginal"] / step1
            row["speedup_total"] = row["lava"]["ms_per_step_total"] / step1
            row["speedup_cpu_marginal"] = row["lava"]["cpu_ms_per_step_marginal"] / cpu1
            row["window_speedup_cpu_marginal"] = row["lava"]["cpu_ms_per_step_marginal"] / wcpu1
    return row


def _lava(path: Path, frames: np.ndarray, sim, args, rng) -> dict:
    from stdl_edge.devices import open_device
    from stdl_edge.devices.base import classify
    from stdl_edge.devices.lava_compat import lava_available

    ok, why = lava_available()
    if not ok:
        return {"skipped": why}
    dev = open_device("lava", path, count=False)  # readout only: Lava's fastest way to classify
    long = np.concatenate([frames, (rng.random((len(frames), *frames.shape[1:])) < args.density)
                           .astype(np.float32)])
    totals: dict[int, list[float]] = {len(frames): [], len(long): []}
    cpus: dict[int, list[float]] = {len(frames): [], len(long): []}
    same = True
    try:
        for _ in range(args.lava_repeats):
            for fr in (frames, long):
                t0, c0 = time.perf_counter(), _cpu_with_children()
                y = classify(dev, fr)  # each stream's runtime is stopped (its processes joined) inside
                totals[len(fr)].append(time.perf_counter() - t0)
                cpus[len(fr)].append(_cpu_with_children() - c0)
                same &= bool(np.array_equal(y, classify(sim, fr)))
    finally:
        dev.close()
    short_t, long_t = (float(np.median(totals[n])) for n in (len(frames), len(long)))
    short_c, long_c = (float(np.median(cpus[n])) for n in (len(frames), len(long)))
    n_short, n_long = len(frames) + sim.latency, len(long) + sim.latency
    return {"s_per_sample": short_t, "ms_per_step_total": 1e3 * short_t / n_short,
            "ms_per_step_marginal": 1e3 * (long_t - short_t) / (n_long - n_short),
            "cpu_ms_per_step_total": 1e3 * short_c / n_short,
            "cpu_ms_per_step_marginal": 1e3 * (long_c - short_c) / (n_long - n_short),
            "steps": [n_short, n_long], "readouts_identical_to_loihi_sim": same, "repeats": args.lava_repeats}


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (Lava runs each process model in
    a worker process): the load-independent cost, as the shared machine's wall clock is not."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _print(rows: list[dict], meta: dict) -> None:
    print(f"{meta['steps']} steps, density {meta['density']}, load average {meta['load_average'][0]:.1f}, "
          f"one core for loihi-sim")
    head = ("network", "load s", "cold window s (no numba)", "ms/step", "CPU ms/step", f"batch {meta['batch']} gain/core",
            "Lava ms/step marginal / total", "speedup marginal / total", "Lava CPU ms/step", "CPU speedup",
            "window CPU ms/step", f"window batch {meta['batch']} gain/core", "window CPU speedup", "identical")
    table = []
    for r in rows:
        lava = r.get("lava", {})
        table.append((r["network"], f"{r['load_s']:.2f}", f"{r['cold_first_window_s']:.2f} ({r['cold_first_window_no_numba_s']:.2f})",
                      f"{r['ms_per_step_batch1']:.2f}",
                      f"{r['cpu_ms_per_step_batch1']:.2f}", f"{r['batch_gain_per_core']:.1f}x",
                      f"{lava['ms_per_step_marginal']:.0f} / {lava['ms_per_step_total']:.0f}"
                      if "ms_per_step_marginal" in lava else "-",
                      f"{r['speedup_marginal']:.0f}x / {r['speedup_total']:.0f}x" if "speedup_marginal" in r else "-",
                      f"{lava['cpu_ms_per_step_marginal']:.0f}" if "cpu_ms_per_step_marginal" in lava else "-",
                      f"{r['speedup_cpu_marginal']:.0f}x" if "speedup_cpu_marginal" in r else "-",
                      f"{r['window_cpu_ms_per_step_batch1']:.2f}", f"{r['window_batch_gain_per_core']:.1f}x",
                      f"{r['window_speedup_cpu_marginal']:.0f}x" if "window_speedup_cpu_marginal" in r else "-",
                      str(lava.get("readouts_identical_to_loihi_sim", "-"))))
    widths = [max(len(str(x[i])) for x in (head, *table)) for i in range(len(head))]
    for line in (head, *table):
        print("  ".join(str(x).rjust(w) for x, w in zip(line, widths)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {', '.join(NETWORKS)}")
    ap.add_argument("--run", default=None, help="trained dvs-cnn run folder (default: fresh dvs-cnn weights)")
    ap.add_argument("--steps", type=int, default=16, help="time steps per sample for loihi-sim")
    ap.add_argument("--lava-steps", type=int, default=4, help="time steps of Lava's short sample (long: twice)")
    ap.add_argument("--batch", type=int, default=64, help="streams for the throughput figure")
    ap.add_argument("--density", type=float, default=0.05, help="fraction of pixels with an event per step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lava-repeats", type=int, default=2)
    ap.add_argument("--no-lava", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loihi_sim.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.lava_repeats, args.steps, args.batch = 2, 1, 8, 16
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        ap.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            path = _pilotnet(work) if name == "pilotnet" else _dvs_cnn(args.run, work, 128 if name.endswith("128") else 34)
            rows.append(bench(name, path, args, rng))
    meta = {"steps": args.steps, "density": args.density, "batch": args.batch, "load_average": list(os.getloadavg()),
            "cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    _print(rows, meta)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
