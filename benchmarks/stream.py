"""Stream inference benchmark (issue 6): events/s and real-time factor per device on one core,
and peak memory against stream length.

Stream: a 128 x 128 DVS at about 1 million events/s, generated chunk by chunk on the fly
(two bright bars sweeping across the sensor plus uniform background activity: a 1 s loop
replayed with shifted timestamps), so no stream is ever held in memory. Model: ``dvs-cnn``, either built for the full 2 x 128 x 128
sensor or for 32 x 32 with the source downsampled by 4 (pixel blocks). Time step 10 ms,
windows of 20 steps. Every device runs on one thread (``torch.set_num_threads(1)``,
onnxruntime intra/inter-op threads = 1).

Real-time factor = seconds of stream / seconds of wall time (binning, device steps and
reading included), and the same against the process's CPU time, which is what one
dedicated core would take when the machine is shared. Target: >= 10x. Memory: peak RSS (``VmHWM``) of a fresh process per
stream length, and the peak traced Python/numpy allocation (``tracemalloc``); target: flat
in stream length.

Real formats: the same stream written with :func:`stdl_edge.sources.write_events` as a
Prophesee DAT, an EVT3 and an AEDAT4 file (timestamps starting at 913 s), run as
``stdl-edge run MODEL --events FILE`` does with its defaults (the 128 x 128 sensor cropped
and downsampled by 3 to a 34 x 34 model, windows of the training length, one thread):
decode + crop + downsample + bin + step, devices and formats taking turns, median and
range of the runs, against wall and CPU time (each its own median: on a shared machine the
CPU-time factor is the one to compare). The first EVT3 run of the process includes numba's
import (the compiled EVT3 decoder). Targets: >= 10x for every device and format, >= 20x for
onnxruntime.

    .venv/bin/python benchmarks/stream.py              # full run, writes benchmarks/results/stream.json
    .venv/bin/python benchmarks/stream.py --quick      # a short smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 1_000_000  # events per second
SENSOR = 128
CHUNK_US = 10_000
DT_US = 10_000
WINDOW = 20


def _make_loop(seed: int = 0, rate: int = RATE, loop_s: float = 1.0) -> list[np.ndarray]:
    """One second of synthetic camera output in 10 ms chunks: two sweeping bars (80 %) and
    background noise (20 %)."""
    from stdl_edge.events import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    per_chunk = int(rate * CHUNK_US / 1e6)
    chunks = []
    for k in range(int(loop_s * 1e6 / CHUNK_US)):
        t0 = k * CHUNK_US
        t = np.sort(rng.integers(t0, t0 + CHUNK_US, per_chunk))
        n_bar = int(per_chunk * 0.8)
        phase = (t[:n_bar] / 1e6 * 120.0) % SENSOR  # bars move 120 px/s
        bar = rng.integers(0, 2, n_bar)
        x = np.where(bar == 0, phase + rng.normal(0, 1.5, n_bar), rng.integers(0, SENSOR, n_bar))
        y = np.where(bar == 0, rng.integers(0, SENSOR, n_bar), (SENSOR - 1 - phase) + rng.normal(0, 1.5, n_bar))
        ev = np.empty(per_chunk, dtype=EVENT_DTYPE)
        ev["t"] = t
        xs = np.concatenate([x, rng.integers(0, SENSOR, per_chunk - n_bar)])
        ys = np.concatenate([y, rng.integers(0, SENSOR, per_chunk - n_bar)])
        order = rng.permutation(per_chunk)  # mix bar and noise events in time
        ev["x"] = np.clip(xs[order], 0, SENSOR - 1).astype(np.int16)
        ev["y"] = np.clip(ys[order], 0, SENSOR - 1).astype(np.int16)
        ev["p"] = rng.integers(0, 2, per_chunk).astype(bool)
        chunks.append(ev)
    return chunks


def synthetic_chunks(duration_s: float, loop: list[np.ndarray] | None = None):
    """Yield 10 ms chunks for ``duration_s`` seconds, replaying the 1 s loop with shifted
    timestamps (a camera driver handing over buffers: the cost of making events is not
    counted). Memory: the loop (16 MB at 1 M events/s) and one chunk, whatever the duration."""
    loop = loop if loop is not None else _make_loop()
    period = len(loop) * CHUNK_US
    for k in range(int(round(duration_s * 1e6 / CHUNK_US))):
        chunk = loop[k % len(loop)]
        if k >= len(loop):
            chunk["t"] += period  # a ring buffer refilled in place: no copy (the pipeline keeps no events)
        yield chunk


def build_artifacts(folder: Path, size: int, devices: list[str]) -> dict[str, Path]:
    """A dvs-cnn run folder for a size x size sensor, exported for the devices asked for."""
    from stdl_edge.api import export
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.models import ModelConfig, build_model

    run = folder / f"dvs-cnn-{size}"
    model = build_model(ModelConfig(input_shape=(2, size, size), num_classes=10), seed=0)
    save_model(run, model, StreamInfo((size, size, 2), DT_US, WINDOW, class_names=[str(i) for i in range(10)]))
    out = {"torch": run}
    if "onnxruntime" in devices:
        out["onnxruntime"] = [p for p in export(run, to="onnx", sequence_steps=None) if p.name == "model.onnx"][0]
    if "loihi-sim" in devices:
        out["loihi-sim"] = [p for p in export(run, to="netx") if p.name == "model.net"][0]
    return out


def measure(device: str, artifact: Path, size: int, duration_s: float) -> dict:
    from stdl_edge.devices import open_device
    from stdl_edge.devices.streaming import run_events
    from stdl_edge.sources import GeneratorSource, Geometry

    dev = open_device(device, artifact)
    loop = _make_loop()
    src = GeneratorSource(lambda: synthetic_chunks(duration_s, loop), (SENSOR, SENSOR), name="synthetic")
    if size != SENSOR:
        src.geometry = Geometry(None, SENSOR // size)
    cpu0 = time.process_time()
    r = run_events(dev, src, window_steps=WINDOW)
    cpu = time.process_time() - cpu0
    lat = r.latency_ms()
    return {"device": device, "model_input": f"2x{size}x{size}", "downsample": SENSOR // size,
            "stream_s": r.stream_us / 1e6, "events": r.events, "wall_s": round(r.wall_s, 3),
            "events_per_s": round(r.events_per_s), "realtime_factor": round(r.realtime_factor, 2),
            "cpu_s": round(cpu, 3), "realtime_factor_cpu": round(r.stream_us / 1e6 / cpu, 2),
            "step_ms_p50": round(lat.get("p50", float("nan")), 3), "step_ms_p99": round(lat.get("p99", float("nan")), 3),
            "windows": len(r.predictions)}


REAL_FORMATS = (("dat", ".dat"), ("evt3", ".raw"), ("aedat4", ".aedat4"))
REAL_T0_US = 913_000_000
REAL_MODEL = 34


def write_recordings(folder: Path, duration_s: float) -> dict[str, Path]:
    """The synthetic stream (1 M events/s, 128 x 128) as a DAT, an EVT3 and an AEDAT4 file."""
    from stdl_edge.sources import write_events

    events = np.concatenate([c.copy() for c in synthetic_chunks(duration_s)])
    events["t"] += REAL_T0_US
    return {fmt: write_events(folder / f"rec-{fmt}{suffix}", events, (SENSOR, SENSOR), format=fmt)
            for fmt, suffix in REAL_FORMATS}


def measure_file(device: str, artifact: Path, path: Path, fmt: str) -> dict:
    """One ``stdl-edge run`` with its defaults on a recording: wall and CPU real-time factors."""
    from stdl_edge.api import open_device, run_events
    from stdl_edge.sources import open_source

    dev = open_device(artifact, device)
    src = open_source(path, format=fmt, fit=dev.stream.sensor[:2])
    cpu0 = time.process_time()  # reading, binning and stepping; not loading the model
    r = run_events(dev, src, window_steps=dev.stream.num_steps)
    cpu = time.process_time() - cpu0
    lat = r.latency_ms()
    return {"device": device, "format": fmt, "model_input": f"2x{REAL_MODEL}x{REAL_MODEL}",
            "geometry": f"crop {src.geometry.crop}, downsample {src.geometry.downsample}",
            "events_read": r.counts.read, "events_kept": r.counts.kept, "stream_s": r.stream_us / 1e6,
            "wall_s": round(r.wall_s, 3), "realtime_factor": round(r.realtime_factor, 2),
            "cpu_s": round(cpu, 3), "realtime_factor_cpu": round(r.stream_us / 1e6 / cpu, 2),
            "step_ms_p50": round(lat.get("p50", float("nan")), 3),
            "step_ms_p90": round(lat.get("p90", float("nan")), 3), "windows": len(r.predictions)}


def real_format_rows(folder: Path, devices: list[str], duration_s: float, repeat: int) -> list[dict]:
    """Median (and range) of ``repeat`` runs per device and format, all taking turns."""
    folder.mkdir(parents=True, exist_ok=True)
    arts = build_artifacts(folder, REAL_MODEL, devices)
    files = write_recordings(folder, duration_s)
    runs: dict[tuple[str, str], list[dict]] = {(d, f): [] for f in files for d in devices if d in arts}
    for _ in range(max(1, repeat)):
        for dev, fmt in runs:
            runs[dev, fmt].append(measure_file(dev, arts[dev], files[fmt], fmt))
    rows = []
    for (dev, fmt), measured in runs.items():
        measured.sort(key=lambda r: r["realtime_factor"])
        cpu_runs = sorted(r["realtime_factor_cpu"] for r in measured)
        row = dict(measured[len(measured) // 2]) | {"repeats": len(measured),
                                                    "realtime_factor_runs": [r["realtime_factor"] for r in measured],
                                                    "realtime_factor_cpu_runs": cpu_runs,
                                                    "realtime_factor_cpu_median": cpu_runs[len(cpu_runs) // 2]}
        rows.append(row)
        target = 20 if dev == "onnxruntime" else 10
        cpu = row["realtime_factor_cpu_median"]
        print(f"{dev:12s} {fmt:7s} {row['events_read'] / 1e6:5.2f} M ev  {row['realtime_factor']:7.2f}x real time "
              f"({measured[0]['realtime_factor']:.2f}-{measured[-1]['realtime_factor']:.2f}x)  CPU time: "
              f"{cpu:6.2f}x ({cpu_runs[0]:.2f}-{cpu_runs[-1]:.2f}x)  step p50 {row['step_ms_p50']:.3f} ms p90 "
              f"{row['step_ms_p90']:.3f} ms  target {target}x: {'met' if cpu >= target else 'NOT met'} (CPU, median)",
              flush=True)
    return rows


def memory_child(duration_s: float, device: str, artifact: str, size: int, traced: bool) -> None:
    """Run one stream in this (fresh) process and print its peak memory as JSON."""
    import tracemalloc

    import torch

    torch.set_num_threads(1)
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    res = measure(device, Path(artifact), size, duration_s)
    peak_traced = tracemalloc.get_traced_memory()[1] if traced else None
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"stream_s": duration_s, "events": res["events"], "peak_rss_mb": round(hwm / 1024, 1),
                      "peak_traced_mb": None if peak_traced is None else round(peak_traced / 2**20, 2),
                      "wall_s": round(time.perf_counter() - t0, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short streams (smoke test)")
    ap.add_argument("--devices", default="torch,onnxruntime,loihi-sim")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of stream per throughput run")
    ap.add_argument("--repeat", type=int, default=3,
                    help="throughput runs per device (devices take turns; the median run is reported)")
    ap.add_argument("--memory-lengths", default="2,10,30", help="stream seconds (x 1 M events) for the memory runs")
    ap.add_argument("--real-only", action="store_true", help="only the real-format rows")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "stream.json"))
    ap.add_argument("--memory-child", nargs=5, metavar=("SECONDS", "DEVICE", "ARTIFACT", "SIZE", "TRACED"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        s, dev, art, size, traced = args.memory_child
        memory_child(float(s), dev, art, int(size), traced == "1")
        return

    import torch

    torch.set_num_threads(1)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    duration = 0.5 if args.quick else args.duration
    lengths = [0.5, 2.0] if args.quick else [float(v) for v in args.memory_lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in () if args.real_only else (32, SENSOR):
            arts = build_artifacts(Path(tmp), size, devices)
            runs: dict[str, list[dict]] = {dev: [] for dev in devices if dev in arts}
            for _ in range(max(1, args.repeat)):  # devices take turns, so machine noise hits all alike
                for dev in runs:
                    runs[dev].append(measure(dev, arts[dev], size, duration))
            for dev, measured in runs.items():
                measured.sort(key=lambda r: r["realtime_factor"])
                row = dict(measured[len(measured) // 2])  # the median run
                row["repeats"] = len(measured)
                row["realtime_factor_runs"] = [r["realtime_factor"] for r in measured]
                rows.append(row)
                print(f"{row['device']:12s} {row['model_input']:10s} ds={row['downsample']}  "
                      f"{row['events_per_s'] / 1e6:6.2f} Mev/s  {row['realtime_factor']:7.2f}x real time "
                      f"(median of {len(measured)}: {measured[0]['realtime_factor']:.2f}-"
                      f"{measured[-1]['realtime_factor']:.2f}x; CPU time: {row['realtime_factor_cpu']:6.2f}x)  "
                      f"step p50 {row['step_ms_p50']:.3f} ms", flush=True)
        real_rows = real_format_rows(Path(tmp) / "real", devices, duration, args.repeat)
        arts = build_artifacts(Path(tmp), 32, ["torch"])
        memory = []
        for traced in () if args.real_only else (False, True):
            for seconds in lengths:
                cmd = [sys.executable, __file__, "--memory-child", str(seconds), "torch", str(arts["torch"]), "32",
                       "1" if traced else "0"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                rec = json.loads(out) | {"tracemalloc": traced}
                memory.append(rec)
                print(f"memory: {rec['events'] / 1e6:5.1f} M events  peak RSS {rec['peak_rss_mb']:7.1f} MB  "
                      f"traced {rec['peak_traced_mb']} MB  ({rec['wall_s']} s)", flush=True)
    result = {"benchmark": "stream", "rate_events_per_s": RATE, "sensor": [SENSOR, SENSOR], "dt_us": DT_US,
              "window_steps": WINDOW, "threads": 1, "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "throughput": rows,
              "real_formats": real_rows,
              "real_formats_t0_us": REAL_T0_US, "memory": memory,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    from stdl_edge.io import write_json

    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
