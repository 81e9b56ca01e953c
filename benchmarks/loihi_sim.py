"""loihi-sim speed: wall time per step (batch 1), throughput with a batch of streams, and Lava's
wall time on the same netx network and input (``Loihi2SimCfg(select_tag='fixed_pt')`` through
``devices.lava_device``), medians over repeats, ratio in one run. Target: loihi-sim >= 100x Lava.

Network: ``dvs-cnn`` (2 x 34 x 34 input, 3 strided convs, dense 128, readout), exported with
``stdl-edge``'s netx exporter, from a trained run (``--run``) or freshly initialised weights
(the spiking init makes every layer fire). Input: Bernoulli event frames (``--density``).

Lava is timed two ways on a whole sample of T steps (``classify``: T + latency steps): the total
per step (process start, compile and teardown included), and the marginal cost of one more step
(difference between two sample lengths), which is the fair steady-state comparison.

    .venv/bin/python benchmarks/loihi_sim.py            # writes benchmarks/results/loihi_sim.json
    .venv/bin/python benchmarks/loihi_sim.py --quick    # fewer repeats, shorter Lava runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _model_net(run: str | None, work: Path) -> Path:
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.exporters.netx import export
    from stdl_edge.models import ModelConfig, build_model

    if run is not None:
        out = work / "netx"
        export(run, out, subnets=False, aux=False)
        return out / "model.net"
    model = build_model(ModelConfig(arch="dvs-cnn", input_shape=(2, 34, 34), num_classes=10), seed=0).eval()
    save_model(work / "run", model, StreamInfo((34, 34, 2), 1000, 16))
    export(work / "run", subnets=False, aux=False)
    return work / "run" / "export" / "netx" / "model.net"


def _one_core():
    """Single-threaded BLAS for loihi-sim (one core, like the stream benchmark); no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _median_step_ms(sim, frames: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median wall ms per step and mean CPU ms per step (this process) over ``repeats`` runs."""
    times = []
    cpu0 = time.process_time()
    with _one_core():
        for _ in range(repeats):
            sim.reset(frames.shape[1])
            for frame in frames:
                t0 = time.perf_counter()
                sim.step(frame)
                times.append(time.perf_counter() - t0)
    cpu = 1e3 * (time.process_time() - cpu0) / max(len(times), 1)
    return 1e3 * float(np.median(times)), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="trained run folder (default: fresh dvs-cnn weights)")
    ap.add_argument("--steps", type=int, default=16, help="time steps per sample")
    ap.add_argument("--batch", type=int, default=64, help="streams for the throughput figure")
    ap.add_argument("--density", type=float, default=0.05, help="fraction of pixels with an event per step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lava-repeats", type=int, default=3)
    ap.add_argument("--no-lava", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loihi_sim.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.lava_repeats, args.steps, args.batch = 2, 1, 8, 16

    from stdl_edge.devices.base import classify
    from stdl_edge.devices.loihi_sim import LoihiSim

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = _model_net(args.run, Path(tmp))
        sim = LoihiSim.from_netx(path)
        shape = sim.input_shape
        f1 = (rng.random((args.steps, 1, *shape)) < args.density).astype(np.float32)
        fb = (rng.random((args.steps, args.batch, *shape)) < args.density).astype(np.float32)
        step1, cpu1 = _median_step_ms(sim, f1, args.repeats)
        stepb, cpub = _median_step_ms(sim, fb, args.repeats)
        with _one_core():
            t0 = time.perf_counter()
            classify(sim, f1)
            sim_sample_s = time.perf_counter() - t0
        result = {
            "network": str(args.run or "dvs-cnn (fresh weights)"), "input_shape": list(shape),
            "layers": [f"{la.kind} {tuple(la.out_shape)}" for la in sim.net.layers], "latency": sim.latency,
            "steps": args.steps, "density": args.density, "load_average": list(os.getloadavg()),
            "cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "loihi_sim": {"ms_per_step_batch1": step1, "ms_per_step_batch": stepb, "batch": args.batch,
                          "cpu_ms_per_step_batch1": cpu1, "cpu_ms_per_step_batch": cpub, "blas_threads": 1,
                          "sample_steps_per_s_batch": 1e3 * args.batch / stepb,
                          "steps_per_s_batch1": 1e3 / step1,
                          "s_per_sample_batch1": sim_sample_s},
        }
        if not args.no_lava:
            result["lava"] = _lava(path, f1, sim, args, rng)
            lava = result["lava"]
            if "ms_per_step_marginal" in lava:
                result["speedup_marginal"] = lava["ms_per_step_marginal"] / step1
                result["speedup_total"] = lava["ms_per_step_total"] / (1e3 * sim_sample_s / (args.steps + sim.latency))
    _print(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _lava(path: Path, frames: np.ndarray, sim, args, rng) -> dict:
    from stdl_edge.devices import open_device
    from stdl_edge.devices.base import classify
    from stdl_edge.devices.lava_compat import lava_available

    ok, why = lava_available()
    if not ok:
        return {"skipped": why}
    dev = open_device("lava", path)
    long = np.concatenate([frames, (rng.random((2 * args.steps, *frames.shape[1:])) < args.density)
                           .astype(np.float32)])
    totals: dict[int, list[float]] = {len(frames): [], len(long): []}
    same = True
    for _ in range(args.lava_repeats):
        for fr in (frames, long):
            t0 = time.perf_counter()
            y = classify(dev, fr)
            totals[len(fr)].append(time.perf_counter() - t0)
            same &= bool(np.array_equal(y, classify(sim, fr)))
    close = getattr(dev, "close", None)
    if callable(close):
        close()
    short_t, long_t = (float(np.median(totals[n])) for n in (len(frames), len(long)))
    n_short, n_long = len(frames) + sim.latency, len(long) + sim.latency
    return {"s_per_sample": short_t, "ms_per_step_total": 1e3 * short_t / n_short,
            "ms_per_step_marginal": 1e3 * (long_t - short_t) / (n_long - n_short),
            "readouts_identical_to_loihi_sim": same, "repeats": args.lava_repeats}


def _print(r: dict) -> None:
    s = r["loihi_sim"]
    rows = [("loihi-sim, batch 1", f"{s['ms_per_step_batch1']:.2f} ms/step",
             f"{s['steps_per_s_batch1']:.0f} steps/s (CPU {s['cpu_ms_per_step_batch1']:.2f} ms/step)"),
            (f"loihi-sim, batch {s['batch']}", f"{s['ms_per_step_batch']:.2f} ms/step",
             f"{s['sample_steps_per_s_batch']:.0f} sample-steps/s (CPU {s['cpu_ms_per_step_batch']:.1f} ms/step)")]
    lava = r.get("lava", {})
    if "ms_per_step_marginal" in lava:
        rows += [("Lava fixed_pt, total", f"{lava['ms_per_step_total']:.1f} ms/step", f"{lava['s_per_sample']:.1f} s/sample"),
                 ("Lava fixed_pt, marginal", f"{lava['ms_per_step_marginal']:.1f} ms/step", ""),
                 ("speedup (marginal / total)", f"{r['speedup_marginal']:.0f}x / {r['speedup_total']:.0f}x",
                  f"identical readouts: {lava['readouts_identical_to_loihi_sim']}")]
    elif lava:
        rows.append(("Lava", "skipped", lava.get("skipped", "")))
    width = max(len(a) for a, _, _ in rows)
    print(f"network {r['network']}, input {r['input_shape']}, {r['steps']} steps, density {r['density']}, "
          f"load {r['load_average'][0]:.1f}")
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:>18}  {c}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
