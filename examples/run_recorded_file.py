"""Record an event stream to a file in a camera format, read it back in chunks, and run it.

    .venv/bin/python examples/run_recorded_file.py [RUN_FOLDER] [--format evt3|evt2|dat|aedat4|hdf5|npy|csv]

The "recording" is 20 digits-dvs test samples played one after another, written at twice
the resolution (68 x 68, as if a bigger camera had seen them) in a real on-disk format
(Prophesee EVT3 by default). The file is then opened with ``open_source(..., fit=...)``,
which downsamples it back to the model's 34 x 34 sensor by 2 x 2 pixel blocks, and
streamed through the torch device in windows of one sample length. Memory stays bounded:
the file is read ``chunk_size`` events at a time.

Without RUN_FOLDER a randomly initialised dvs-cnn is used (predictions are then
meaningless, but everything else, including the timings, is real); pass a run folder
written by ``stdl-edge train --data digits-dvs`` for real predictions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

SUFFIX = {"evt3": ".raw", "evt2": ".raw", "dat": ".dat", "aedat4": ".aedat4", "hdf5": ".h5", "npy": ".npy",
          "csv": ".csv"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run folder (default: an untrained dvs-cnn)")
    ap.add_argument("--format", default="evt3", choices=sorted(SUFFIX))
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    try:
        from stdl_edge.data import dataset_info, load_dataset
    except ImportError as e:
        sys.exit(f"this example needs the bundled data sets (stdl_edge.data), not available here: {e}")
    from stdl_edge.api import open_device, run_events
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.sources import open_source, write_events
    from stdl_edge.models import ModelConfig, build_model

    tmp = Path(tempfile.mkdtemp(prefix="stdl-edge-recording-"))
    info = dataset_info("digits-dvs")
    ds = load_dataset("digits-dvs", "test")
    n = min(args.samples, len(ds))
    parts = []
    for i in range(n):
        ev = ds.events(i)
        ev["t"] += i * info.duration_us
        ev["x"] *= 2  # a 68 x 68 camera
        ev["y"] *= 2
        parts.append(ev)
    recording = np.concatenate(parts)
    path = write_events(tmp / f"recording{SUFFIX[args.format]}", recording, (68, 68), format=args.format)
    print(f"wrote {len(recording):,} events ({n} samples, {n * info.duration_us / 1e6:.1f} s) to {path} "
          f"({path.stat().st_size / 1e6:.2f} MB, {args.format})")

    run = Path(args.run) if args.run else None
    if run is None:
        run = save_model(tmp / "untrained", build_model(ModelConfig(input_shape=(2, 34, 34), num_classes=10), seed=0),
                         StreamInfo(info.sensor_size, info.dt_us, info.num_steps, class_names=info.class_names))
        print("no run folder given: using an untrained dvs-cnn (predictions are meaningless)")
    device = open_device(run, "torch")
    source = open_source(path, fit=device.stream.sensor[:2], chunk_size=50_000)
    print(f"source: {source.native_size.width}x{source.native_size.height} -> {source.sensor_size.width}x"
          f"{source.sensor_size.height} (crop {source.geometry.crop}, downsample {source.geometry.downsample})")
    result = run_events(device, source, window_steps=device.stream.num_steps)
    labels = ds.labels[:n]
    preds = np.array([p["prediction"] for p in result.predictions[:n]])
    print(f"{len(result.predictions)} windows; agreement with the labels {np.mean(preds == labels):.3f}; "
          f"{result.events_per_s / 1e6:.2f} M events/s, {result.realtime_factor:.1f}x real time")


if __name__ == "__main__":
    main()
