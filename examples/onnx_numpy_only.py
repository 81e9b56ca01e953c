"""Run an exported stdl-edge model with numpy + onnxruntime only (no torch, no stdl-edge).

    python examples/onnx_numpy_only.py runs/demo/export/onnx [events1.npy events2.npy ...]

Each ``.npy`` file holds one sample's events as a numpy structured array with fields
``x, y, t, p`` (t in microseconds, p = ON polarity), as ``np.save`` writes them. Without
files, a few random event streams are made up so the script shows the whole loop.

What it does, step by step, is what a device on an edge CPU does:

1. read ``manifest.json``: the step graph, its state tensors, the time step ``dt_us``,
   the sensor size, the number of steps and the class names;
2. bin the events into frames ``(T, 2, H, W)``: step ``k`` holds the events with
   ``k * dt <= t < (k + 1) * dt``; channel 0 is OFF, 1 is ON; a pixel is 1 if it had an
   event in the step (``bin_mode`` ``count`` adds them up instead);
3. run the step graph ``T`` times, feeding each step's ``state_out.*`` back as the next
   step's ``state_in.*``, and average the readout ``y`` over time;
4. print the predicted class and its softmax probability.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def bin_events(events: np.ndarray, width: int, height: int, dt_us: int, steps: int, mode: str) -> np.ndarray:
    """Frames ``(steps, 2, height, width)`` float32 from structured events (plain numpy)."""
    frames = np.zeros((steps, 2, height, width), dtype=np.float32)
    k = events["t"].astype(np.int64) // dt_us
    keep = (k >= 0) & (k < steps) & (events["x"] >= 0) & (events["x"] < width) \
        & (events["y"] >= 0) & (events["y"] < height)
    k, ev = k[keep], events[keep]
    p = ev["p"].astype(np.int64)
    if mode == "count":
        np.add.at(frames, (k, p, ev["y"].astype(np.int64), ev["x"].astype(np.int64)), 1.0)
    else:
        frames[k, p, ev["y"].astype(np.int64), ev["x"].astype(np.int64)] = 1.0
    return frames


def classify(session: ort.InferenceSession, states: list[dict], frames: np.ndarray) -> np.ndarray:
    """Mean readout over time of ``frames (T, B, 2, H, W)``; the state starts at rest (zeros)."""
    batch = frames.shape[1]
    state = {f"state_in.{s['name']}": np.zeros((batch, *s["shape"]), np.float32) for s in states}
    outputs = ["y"] + [f"state_out.{s['name']}" for s in states]
    total = 0.0
    for frame in frames:
        y, *new = session.run(outputs, {"x": frame, **state})
        state = {f"state_in.{s['name']}": v for s, v in zip(states, new)}
        total = total + y
    return total / len(frames)


def random_events(n: int, width: int, height: int, duration_us: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    ev["x"], ev["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, duration_us, n)), rng.integers(0, 2, n)
    return ev


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    folder = Path(argv[0])
    manifest = json.loads((folder / "manifest.json").read_text())
    stream, whole = manifest["stream"], manifest["whole"]
    width, height, _ = stream["sensor_size"]
    dt_us, steps, mode = int(stream["dt_us"]), int(stream["num_steps"]), stream["bin_mode"]
    names = stream["class_names"] or [str(i) for i in range(manifest["num_classes"])]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # batch 1 on a small CPU: one thread is fastest
    session = ort.InferenceSession(str(folder / whole["file"]), options, providers=["CPUExecutionProvider"])

    if len(argv) > 1:
        samples = [(Path(p).name, np.load(p, allow_pickle=False)) for p in argv[1:]]
    else:
        samples = [(f"random{i}", random_events(400, width, height, steps * dt_us, seed=i)) for i in range(3)]
    frames = np.stack([bin_events(ev, width, height, dt_us, steps, mode) for _, ev in samples], axis=1)
    logits = classify(session, whole["states"], frames)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for (label, _), p in zip(samples, probs):
        k = int(p.argmax())
        print(f"{label}: {names[k]} (p = {p[k]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
