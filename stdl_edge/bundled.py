"""The two bundled data sets, generated with the DVS emulator (seconds, no download).

- ``digits-dvs``: the 1,797 real 8x8 handwritten digits of ``sklearn.datasets.load_digits``,
  upsampled (bilinear) to 28x28 in the middle of a 34x34 sensor and moved through three
  100 ms saccades along a small triangle, as N-MNIST was recorded from MNIST. 10 classes.
- ``shapes-dvs``: a random shape (disc, square, diamond, ring) with random size, start,
  speed and contrast sign (bright on dark or dark on bright) moving right, left, up or
  down on a 32x32 sensor; the class is the direction. Summed over time, "right, bright"
  and "left, dark" give the same event image, so a model that ignores time cannot tell
  right from left (or up from down); the order of the steps can.

Each renders videos and converts them with :mod:`stdl_edge.emulator`; :mod:`stdl_edge.data`
caches, splits and bins them like any registered data set.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, NamedTuple

import numpy as np

from .data import DatasetBuilder, DatasetInfo, Progress, RawData, balanced_subset, register_dataset
from .emulator import Emulator, EmulatorConfig, run_batch


# ----------------------------------------------------------------------------- rendering helpers


def resize_bilinear(images: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resample ``images (N, h, w)`` to ``(N, out_h, out_w)`` by bilinear interpolation (pixel centres aligned)."""
    n, h, w = images.shape

    def axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
        src = np.clip(src, 0, size_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, size_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    rows = images[:, y0, :] * (1 - fy)[None, :, None] + images[:, y1, :] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def shift_bilinear(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``out[..., y, x] = images[..., y - dy, x - dx]``, bilinear between pixels, zero outside (same dtype)."""
    h, w = images.shape[-2:]
    pad = int(math.ceil(max(abs(dx), abs(dy)))) + 1
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(pad, pad), (pad, pad)])
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = dx - ix, dy - iy

    def view(sx: int, sy: int) -> np.ndarray:  # images shifted by whole pixels (sx, sy)
        return padded[..., pad - sy:pad - sy + h, pad - sx:pad - sx + w]

    out = view(ix, iy) * images.dtype.type((1 - fx) * (1 - fy))
    for sx, sy, weight in ((ix + 1, iy, fx * (1 - fy)), (ix, iy + 1, (1 - fx) * fy), (ix + 1, iy + 1, fx * fy)):
        if weight:
            out += view(sx, sy) * images.dtype.type(weight)
    return out


def _emulate_in_batches(render: Callable[[np.ndarray, float], np.ndarray], n: int, timestamps_us: np.ndarray,
                        sensor_hw: tuple[int, int], config: EmulatorConfig, progress: Progress | None,
                        batch: int = 256) -> list[np.ndarray]:
    """Emulate ``n`` videos, ``render(sample_indices, t_s) -> (B, H, W)``, one sensor, ``batch`` at a time."""
    events: list[np.ndarray] = []
    for k, start in enumerate(range(0, n, batch)):
        idx = np.arange(start, min(start + batch, n))
        emu = Emulator(config, sensor_hw, batch=len(idx), recording=k)
        frames = (render(idx, t * 1e-6) for t in timestamps_us)
        events.extend(run_batch(emu, frames, timestamps_us))
        if progress is not None:
            progress(len(events), n)
    return events


#: the emulated sensor of the bundled data sets: typical DVS contrast, mismatch, noise, dead time
SENSOR_CONFIG = EmulatorConfig(c_on=0.2, c_off=0.2, mismatch_sigma=0.02, shot_noise_hz=0.2,
                               refractory_us=500, eps=0.1)
FRAME_US = 1000  # videos are rendered at 1 kHz


# ----------------------------------------------------------------------------- digits-dvs

DIGITS_INFO = DatasetInfo(
    name="digits-dvs", sensor_size=(34, 34, 2), class_names=tuple(str(d) for d in range(10)),
    duration_us=300_000, dt_us=37_500, num_steps=8, num_samples=1797,
    description="1,797 sklearn 8x8 handwritten digits upsampled to 28x28 on a 34x34 emulated DVS, "
                "three 100 ms saccades along a triangle (N-MNIST style); 10 classes",
    version=1,
)
SACCADE_US = 100_000
#: saccade triangle vertices (dx, dy) in sensor pixels, centred on the rest position
_TRIANGLE = np.array([[0.0, 0.0], [1.5, 2.6], [3.0, 0.0]]) - np.array([1.5, 2.6 / 3])


def saccade_offset(t_s: float) -> tuple[float, float]:
    """Digit displacement ``(dx, dy)`` in pixels at ``t_s`` seconds: three eased moves around the triangle."""
    k = min(int(t_s * 1e6 // SACCADE_US), 2)
    u = min(max(t_s * 1e6 / SACCADE_US - k, 0.0), 1.0)
    ease = 0.5 - 0.5 * math.cos(math.pi * u)  # smooth start and stop, like a pan-tilt unit
    a, b = _TRIANGLE[k], _TRIANGLE[(k + 1) % 3]
    d = a + ease * (b - a)
    return float(d[0]), float(d[1])


def _build_digits(seed: int, limit: int | None, progress: Progress | None) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels)) if limit is None else balanced_subset(labels, limit, seed)
    glyphs = resize_bilinear(digits.images[index] / 16.0, 28, 28)
    canvas = np.zeros((len(index), 34, 34), dtype=np.float32)
    canvas[:, 3:31, 3:31] = glyphs
    np.clip(canvas, 0.0, 1.0, out=canvas)
    ts = np.arange(0, DIGITS_INFO.duration_us + 1, FRAME_US, dtype=np.int64)

    def render(idx: np.ndarray, t_s: float) -> np.ndarray:
        dx, dy = saccade_offset(t_s)
        return np.clip(shift_bilinear(canvas[idx], dx, dy), 0.0, 1.0)

    events = _emulate_in_batches(render, len(index), ts, (34, 34), replace(SENSOR_CONFIG, seed=seed), progress)
    return RawData(events, labels[index])


register_dataset("digits-dvs", DatasetBuilder(DIGITS_INFO, _build_digits))


# ----------------------------------------------------------------------------- shapes-dvs

SHAPES_INFO = DatasetInfo(
    name="shapes-dvs", sensor_size=(32, 32, 2), class_names=("right", "left", "up", "down"),
    duration_us=200_000, dt_us=25_000, num_steps=8, num_samples=2000,
    description="a random shape (disc, square, diamond, ring; random size, start, speed, contrast sign) "
                "moving right, left, up or down on a 32x32 emulated DVS; class = direction, needs time",
    version=1,
)
SHAPE_KINDS = ("disc", "square", "diamond", "ring")
#: unit direction (dx, dy) of each class; y grows downwards (image rows)
DIRECTIONS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


class ShapeParams(NamedTuple):
    """Per-sample parameters of shapes-dvs videos, each ``(N,)``. Positions in pixels, speeds in px/s."""

    kind: np.ndarray    # int, index into SHAPE_KINDS
    radius: np.ndarray  # pixels
    x0: np.ndarray      # centre at t = 0
    y0: np.ndarray
    vx: np.ndarray      # velocity, pixels per second
    vy: np.ndarray
    fg: np.ndarray      # intensity of the shape, [0, 1]
    bg: np.ndarray      # intensity of the background, [0, 1]

    def take(self, idx: np.ndarray) -> ShapeParams:
        return ShapeParams(*(a[idx] for a in self))

    def reversed(self, duration_s: float) -> ShapeParams:
        """The same motion played backwards: starts where this ends, opposite velocity."""
        return self._replace(x0=self.x0 + self.vx * duration_s, y0=self.y0 + self.vy * duration_s,
                             vx=-self.vx, vy=-self.vy)


def shape_params(labels: np.ndarray, seed: int, size: int = 32, duration_s: float = 0.2) -> ShapeParams:
    """Draw one random shape video per label (label = direction index), so the path stays on the sensor."""
    rng = np.random.default_rng([seed, 3])
    n = len(labels)
    kind = rng.integers(0, len(SHAPE_KINDS), n)
    radius = rng.uniform(3.0, 5.0, n)
    speed = rng.uniform(30.0, 90.0, n)  # 6-18 pixels over 200 ms
    bright = rng.random(n) < 0.5
    low, high = rng.uniform(0.1, 0.3, n), rng.uniform(0.7, 0.9, n)
    margin = radius + 1.5
    travel = speed * duration_s
    # along the motion: start anywhere the whole path fits; across it: anywhere the shape fits
    along = margin + rng.random(n) * (size - 1 - 2 * margin - travel)
    across = margin + rng.random(n) * (size - 1 - 2 * margin)
    d = DIRECTIONS[labels]
    horizontal = d[:, 0] != 0
    start_along = np.where((d[:, 0] < 0) | (d[:, 1] < 0), along + travel, along)
    x0 = np.where(horizontal, start_along, across)
    y0 = np.where(horizontal, across, start_along)
    return ShapeParams(kind, radius, x0, y0, d[:, 0] * speed, d[:, 1] * speed,
                       np.where(bright, high, low), np.where(bright, low, high))


def render_shapes(params: ShapeParams, t_s: float, size: int = 32) -> np.ndarray:
    """Frames ``(N, size, size)`` at ``t_s`` seconds: anti-aliased shapes (1-pixel edge ramp) on a flat background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((len(params.kind), size, size), dtype=np.float32)
    for kind in range(len(SHAPE_KINDS)):
        sel = np.flatnonzero(params.kind == kind)
        if len(sel) == 0:
            continue
        dx = np.abs(xx - (params.x0[sel] + params.vx[sel] * t_s).astype(np.float32)[:, None, None])
        dy = np.abs(yy - (params.y0[sel] + params.vy[sel] * t_s).astype(np.float32)[:, None, None])
        r = params.radius[sel].astype(np.float32)[:, None, None]
        if kind == 0:      # disc
            sdf = np.hypot(dx, dy) - r
        elif kind == 1:    # square (half side 0.85 r: about the disc's area)
            sdf = np.maximum(dx, dy) - 0.85 * r
        elif kind == 2:    # diamond
            sdf = (dx + dy - 1.2 * r) * np.float32(1 / math.sqrt(2))
        else:              # ring, 2 pixels wide
            sdf = np.abs(np.hypot(dx, dy) - r) - 1.0
        cover = np.clip(0.5 - sdf, 0.0, 1.0)
        bg = params.bg[sel].astype(np.float32)[:, None, None]
        frames[sel] = bg + (params.fg[sel].astype(np.float32)[:, None, None] - bg) * cover
    return frames


def _shapes_labels(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 5])
    return rng.permutation(np.arange(n) % len(SHAPES_INFO.class_names)).astype(np.int64)


def _build_shapes(seed: int, limit: int | None, progress: Progress | None) -> RawData:
    n = SHAPES_INFO.num_samples
    labels = _shapes_labels(seed, n)
    params = shape_params(labels, seed, 32, SHAPES_INFO.duration_us * 1e-6)
    index = np.arange(n) if limit is None else balanced_subset(labels, limit, seed)
    params = params.take(index)
    ts = np.arange(0, SHAPES_INFO.duration_us + 1, FRAME_US, dtype=np.int64)
    events = _emulate_in_batches(lambda idx, t_s: render_shapes(params.take(idx), t_s, 32), len(index), ts,
                                 (32, 32), replace(SENSOR_CONFIG, seed=seed), progress)
    return RawData(events, labels[index])


register_dataset("shapes-dvs", DatasetBuilder(SHAPES_INFO, _build_shapes))

