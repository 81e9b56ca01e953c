"""Bundled event-camera data sets, generated with the DVS emulator and cached.

Two data sets ship with stdl-edge; both are made on first use (seconds, no download)
by rendering videos and converting them with :mod:`stdl_edge.emulator`, then cached as
``<name>-v<version>-seed<seed>.npz`` under ``$STDL_EDGE_CACHE`` (default
``~/.cache/stdl-edge``):

- ``digits-dvs``: the 1,797 real 8x8 handwritten digits of ``sklearn.datasets.load_digits``,
  upsampled (bilinear) to 28x28 in the middle of a 34x34 sensor and moved through three
  100 ms saccades along a small triangle, as N-MNIST was recorded from MNIST. 10 classes.
- ``shapes-dvs``: a random shape (disc, square, diamond, ring) with random size, start,
  speed and contrast sign (bright on dark or dark on bright) moving right, left, up or
  down on a 32x32 sensor; the class is the direction. Summed over time, "right, bright"
  and "left, dark" give the same event image, so a model that ignores time cannot tell
  right from left (or up from down); the order of the steps can.

Each data set has a fixed stratified train/test split (80/20, from the seed).
:func:`load_dataset` bins the events once with :func:`stdl_edge.events.bin_events`
into a compact uint8 array, so training epochs only index memory::

    ds = load_dataset("digits-dvs", "train")        # EventDataset
    frames, label = ds[0]                           # float32 (T, 2, H, W), int
    ds.events(0)                                    # EVENT_DTYPE array of sample 0

More data sets (tonic's N-MNIST, say) plug in with :func:`register_dataset`.
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .artifact import StreamInfo
from .emulator import Emulator, EmulatorConfig, run_batch
from .events import BIN_MODES, EVENT_DTYPE, SensorSize, as_events, bin_events, validate_events
from .io import atomic_path
from .registry import Registry

#: layout of the cache file; part of every cache file name with the data set's own version
CACHE_FORMAT = 1
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2

#: progress callback: ``progress(done, total)`` in samples
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is, and its default binning.

    sensor_size: (width, height, polarities) of the sensor, pixels.
    class_names: one name per label, in label order.
    duration_us: length of every sample, microseconds.
    dt_us, num_steps: default time step (microseconds) and steps per sample
        (``num_steps * dt_us`` covers ``duration_us``).
    num_samples: samples in the full data set (train + test).
    version: bumped whenever the generator changes, so a stale cache is never read.
    """

    name: str
    sensor_size: tuple[int, int, int]
    class_names: tuple[str, ...]
    duration_us: int
    dt_us: int
    num_steps: int
    num_samples: int
    description: str
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    @property
    def sensor(self) -> SensorSize:
        return SensorSize(*self.sensor_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class RawData(NamedTuple):
    """What a builder returns: one event array per sample and the labels ``(N,)``."""

    events: list[np.ndarray]
    labels: np.ndarray


@dataclass(frozen=True)
class DatasetBuilder:
    """A registered data set: its info and ``build(seed, limit, progress) -> RawData``.

    ``limit`` (or None for all) asks for a class-balanced subset of about that many samples
    (tests and quick looks). ``requires`` lists importable modules the builder needs and
    ``extra`` the pip extra that installs them.
    """

    info: DatasetInfo
    build: Callable[[int, int | None, Progress | None], RawData]
    requires: tuple[str, ...] = ()
    extra: str = ""


_BUILDERS: Registry[DatasetBuilder] = Registry("data set")
#: names of the registered data sets (kept in step with :func:`register_dataset`)
DATASETS: list[str] = []


def register_dataset(name: str, builder: DatasetBuilder) -> DatasetBuilder:
    """Make ``builder`` loadable as ``name`` (a later registration of the same name replaces it)."""
    if not isinstance(builder, DatasetBuilder):
        raise ValueError(f"register_dataset({name!r}, ...) needs a stdl_edge.data.DatasetBuilder, "
                         f"got {type(builder).__name__}")
    if builder.info.name != name:
        raise ValueError(f"data set name {name!r} differs from its info.name {builder.info.name!r}")
    _BUILDERS.register(name, builder, builder.info.description, builder.requires, builder.extra)
    if name not in DATASETS:
        DATASETS.append(name)
    return builder


def unregister_dataset(name: str) -> None:
    """Remove a registered data set (its cache files stay); ValueError if it is not registered."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    DATASETS.remove(name)
    _BUILDERS._entries.pop(name, None)


def _builder(name: str) -> DatasetBuilder:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    try:
        return _BUILDERS.get(name)
    except RuntimeError as e:
        raise ValueError(str(e)) from None


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a registered data set (ValueError for an unknown name)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    return next(e.target.info for e in _BUILDERS.entries() if e.name == name)  # needs no optional package


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$STDL_EDGE_CACHE``, or ``~/.cache/stdl-edge``."""
    env = os.environ.get("STDL_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stdl-edge"


def cache_path(name: str, seed: int = 0, limit: int | None = None) -> Path:
    """Where the events of data set ``name`` built with ``seed`` (and ``limit``) are cached."""
    info = dataset_info(name)
    sub = f"-limit{limit}" if limit is not None else ""
    return cache_dir() / f"{name}-v{info.version}.{CACHE_FORMAT}-seed{seed}{sub}.npz"


class Stored(NamedTuple):
    """A built data set as cached: all samples' events, labels, split and build record."""

    events: np.ndarray   # EVENT_DTYPE, all samples concatenated
    offsets: np.ndarray  # int64 (N + 1,): sample i is events[offsets[i]:offsets[i + 1]]
    labels: np.ndarray   # int64 (N,)
    is_test: np.ndarray  # bool (N,)
    meta: dict[str, Any]


def stratified_split(labels: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Boolean test mask: in each class, ``round(test_fraction * n)`` samples drawn with ``seed``."""
    rng = np.random.default_rng([seed, 7])
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(idx)))
        is_test[rng.permutation(idx)[:n_test]] = True
    return is_test


def balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``limit`` samples, equally many per class (drawn with ``seed``)."""
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    rng = np.random.default_rng([seed, 11])
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picks))


def _save(path: Path, stored: Stored) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, events=stored.events, offsets=stored.offsets, labels=stored.labels,
                     is_test=stored.is_test, meta=np.array(json.dumps(stored.meta)))


def _load(path: Path, info: DatasetInfo) -> Stored | None:
    """Read a cache file; None if it is missing, corrupt or from another generator version."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            stored = Stored(z["events"], z["offsets"].astype(np.int64), z["labels"].astype(np.int64),
                            z["is_test"].astype(bool), meta)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    n = len(stored.labels)
    ok = (stored.events.dtype == EVENT_DTYPE and stored.offsets.shape == (n + 1,)
          and stored.is_test.shape == (n,) and n > 0 and stored.offsets[0] == 0
          and stored.offsets[-1] == len(stored.events) and np.all(np.diff(stored.offsets) >= 0)
          and meta.get("version") == info.version and meta.get("name") == info.name
          and stored.labels.min() >= 0 and stored.labels.max() < info.num_classes)
    return stored if ok else None


def build_dataset(name: str, *, seed: int = 0, limit: int | None = None, rebuild: bool = False,
                  progress: Progress | None = None) -> tuple[Stored, Path]:
    """Load the cached events of ``name``, or generate and cache them; returns them and the cache path.

    A missing, corrupt or stale cache file is (re)generated; ``rebuild=True`` always regenerates.
    """
    builder = _builder(name)
    info = builder.info
    _check_int("seed", seed, minimum=0)
    if limit is not None:
        _check_int("limit", limit, minimum=info.num_classes)
    path = cache_path(name, seed, limit)
    stored = None if rebuild else _load(path, info)
    if stored is not None:
        return stored, path
    start = time.perf_counter()
    raw = builder.build(seed, limit, progress)
    seconds = time.perf_counter() - start
    labels = np.asarray(raw.labels, dtype=np.int64)
    if len(raw.events) != len(labels) or len(labels) == 0:
        raise RuntimeError(f"builder of {name!r} returned {len(raw.events)} event arrays for "
                           f"{len(labels)} labels")
    if labels.min() < 0 or labels.max() >= info.num_classes:
        raise RuntimeError(f"builder of {name!r} returned labels {int(labels.min())}..{int(labels.max())}; "
                           f"they must be in 0..{info.num_classes - 1} (one per class name)")
    pieces = [as_events(validate_events(ev, info.sensor)) for ev in raw.events]
    lengths = np.array([len(ev) for ev in pieces], dtype=np.int64)
    events = np.concatenate(pieces)
    stored = Stored(events, np.concatenate([[0], np.cumsum(lengths)]), labels,
                    stratified_split(labels, seed),
                    {"name": name, "version": info.version, "seed": seed, "limit": limit,
                     "build_seconds": round(seconds, 3), "num_samples": len(labels)})
    _save(path, stored)
    return stored, path


# ----------------------------------------------------------------------------- dataset


def _check_int(what: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what}={value!r} must be a whole number >= {minimum}")
    return int(value)


def resolve_binning(info: DatasetInfo, num_steps: int | None, dt_us: int | None) -> tuple[int, int]:
    """``(num_steps, dt_us)``: the defaults, or the one given plus the other to cover the sample."""
    if num_steps is not None:
        _check_int("num_steps", num_steps)
    if dt_us is not None:
        _check_int("dt_us", dt_us)
    if num_steps is None and dt_us is None:
        return info.num_steps, info.dt_us
    if dt_us is None:
        return int(num_steps), math.ceil(info.duration_us / num_steps)
    if num_steps is None:
        return math.ceil(info.duration_us / dt_us), int(dt_us)
    return int(num_steps), int(dt_us)


class EventDataset(Dataset):
    """One split of a data set, binned once: a ``torch.utils.data.Dataset`` of ``(frames, label)``.

    frames: float32 tensor ``(T, 2, H, W)`` (channel 0 OFF, 1 ON), label: int.
    Attributes: ``info`` (DatasetInfo), ``split``, ``stream`` (StreamInfo to record with a
    model), ``labels`` (np.int64 ``(N,)``), ``frames`` (the uint8 ``(N, T, 2, H, W)`` array
    behind ``__getitem__``, for fast batching), ``is_test`` (bool ``(N,)``), ``cache_path``,
    ``meta`` (the build record).
    """

    def __init__(self, info: DatasetInfo, split: str, stored: Stored, stream: StreamInfo, path: Path) -> None:
        self.info = info
        self.split = split
        self.stream = stream
        self.cache_path = path
        self.meta = dict(stored.meta)
        if split == "all":
            index = np.arange(len(stored.labels))
        else:
            index = np.flatnonzero(stored.is_test == (split == "test"))
        self._index = index
        self._events = stored.events
        self._offsets = stored.offsets
        self.labels = stored.labels[index].copy()
        self.is_test = stored.is_test[index].copy()
        spec = stream.bin_spec
        dtype = np.uint8
        frames = np.zeros((len(index), stream.num_steps, *info.sensor.frame_shape), dtype=dtype)
        for i, j in enumerate(index):
            f = bin_events(self._raw(j), info.sensor, spec, stream.num_steps)
            np.minimum(f, np.iinfo(dtype).max, out=f)  # counts above 255 in one step saturate
            frames[i] = f
        self.frames = frames

    def _raw(self, j: int) -> np.ndarray:
        return self._events[self._offsets[j]:self._offsets[j + 1]]

    def __len__(self) -> int:
        return len(self._index)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for the {self.split} split of {self.info.name} "
                             f"({n} samples)")
        return i % n

    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i`` (a copy, EVENT_DTYPE, sorted, ``t`` in ``[0, duration_us)``)."""
        return self._raw(int(self._index[self._check_index(i)])).copy()

    def num_events(self) -> np.ndarray:
        """Events per sample, int64 ``(N,)``."""
        return np.diff(self._offsets)[self._index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._check_index(i)
        return torch.from_numpy(self.frames[i].astype(np.float32)), int(self.labels[i])

    def __repr__(self) -> str:
        return (f"EventDataset({self.info.name!r}, split={self.split!r}, samples={len(self)}, "
                f"steps={self.stream.num_steps}, dt_us={self.stream.dt_us}, bin_mode={self.stream.bin_mode!r})")


def load_dataset(name: str, split: str, *, num_steps: int | None = None, dt_us: int | None = None,
                 bin_mode: str = "binary", seed: int = 0, limit: int | None = None, rebuild: bool = False,
                 progress: Progress | None = None) -> EventDataset:
    """The ``split`` ("train", "test" or "all") of data set ``name``, binned into frames.

    num_steps, dt_us: binning (defaults from :func:`dataset_info`; give one and the other
    covers the sample duration). bin_mode: "binary" or "count". seed: generation and split.
    limit: a class-balanced subset of about that many samples (its own cache file).
    rebuild: regenerate even if cached. progress: ``progress(done, total)`` while generating.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    if bin_mode not in BIN_MODES:
        raise ValueError(f"bin_mode {bin_mode!r} is unknown; use one of {', '.join(BIN_MODES)}")
    steps, dt = resolve_binning(info, num_steps, dt_us)
    stored, path = build_dataset(name, seed=seed, limit=limit, rebuild=rebuild, progress=progress)
    stream = StreamInfo(sensor_size=info.sensor_size, dt_us=dt, num_steps=steps, bin_mode=bin_mode,
                        class_names=info.class_names)
    return EventDataset(info, split, stored, stream, path)


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

