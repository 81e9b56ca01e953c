"""Event-camera data sets: a registry, the generated sets' cache, and binned splits ready for training.

A data set is a :class:`DatasetBuilder` registered by name (:func:`register_dataset`): its
:class:`DatasetInfo` and either a function that generates its raw events (``build``: the
bundled sets, cached as ``<name>-v<version>-seed<seed>.npz`` under ``$STDL_EDGE_CACHE``, default
``~/.cache/stdl-edge``, with a fixed stratified train/test split, 80/20 from the seed) or one
that opens its own files and splits (``open``: the tonic sets). ``folder:PATH`` and entry-point
plug-ins are found by name too (:mod:`stdl_edge.datasets`). :func:`load_dataset` returns an
:class:`EventDataset` whose frames are binned with :func:`stdl_edge.binning.bin_events` into a
compact uint8 array on first use, so training epochs only index memory::

    ds = load_dataset("digits-dvs", "train")        # EventDataset
    frames, label = ds[0]                           # float32 (T, 2, H, W), int
    ds.events(0)                                    # EVENT_DTYPE array of sample 0
    for x, y in materialize(ds).batches(32):        # (T, B, 2, H, W) float32, (B,) int64
        ...

Data sets larger than memory train through :class:`stdl_edge.datasets.loader.FrameData`
(a DataLoader, binned on the fly or from the frame cache) instead of :func:`materialize`.
The two bundled data sets (``digits-dvs``, ``shapes-dvs``, made by the DVS emulator) live in
:mod:`stdl_edge.bundled` and the tonic ones in :mod:`stdl_edge.datasets_tonic`; both register
on import of this module.

Long file: the registry, the generated-set cache and splits, the binned ``EventDataset`` and the
in-memory batches are one contract; reading recordings, slicing, caching frames and streaming
live in ``stdl_edge/datasets/``, the bundled generators in ``bundled.py``.
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .artifact import StreamInfo
from .binning import BIN_MODES
from .events import EVENT_DTYPE, SensorSize, as_events, validate_events
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
    """A registered data set: its info and either ``build`` or ``open``.

    build(seed, limit, progress) -> RawData: generates every sample's events (the bundled sets,
    small plug-ins); they are cached and split 80/20 here. ``limit`` (or None for all) asks for a
    class-balanced subset of about that many samples.
    open(split, options) -> :class:`stdl_edge.datasets.samples.Samples`: a data set that reads
    its own files and splits ("train", "test"; tonic, folders); ``options`` holds ``root``.
    where(options) -> (where it looks, present): for ``stdl-edge data --list`` (``open`` sets).
    ``requires`` lists importable modules the builder needs and ``extra`` the pip extra.
    """

    info: DatasetInfo
    build: Callable[[int, int | None, Progress | None], RawData] | None = None
    requires: tuple[str, ...] = ()
    extra: str = ""
    open: Callable[[str, dict[str, Any]], Any] | None = None
    where: Callable[[dict[str, Any]], tuple[str, bool]] | None = None

    def __post_init__(self) -> None:
        if (self.build is None) == (self.open is None):
            raise ValueError(f"data set {self.info.name!r}: give a DatasetBuilder exactly one of build= and open=")


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


def _known(name: str) -> None:
    """ValueError for a name that is neither registered nor found as a plug-in (entry point)."""
    if name not in DATASETS:
        from .datasets.plugins import load_plugin

        load_plugin(name)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}, folder:PATH "
                         "or an installed plug-in")


def _builder(name: str) -> DatasetBuilder:
    _known(name)
    return _BUILDERS.get(name)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a registered data set (ValueError for an unknown name);
    ``folder:PATH`` is scanned (:mod:`stdl_edge.datasets.folder`)."""
    from .datasets.folder import is_folder_name

    if is_folder_name(name):
        from .datasets import folder_info

        return folder_info(name)
    _known(name)
    return next(e.target.info for e in _BUILDERS.entries() if e.name == name)  # needs no optional package


def dataset_entry(name: str, check: bool = True) -> DatasetBuilder:
    """The registered builder of ``name``; ``check``: an ``UnavailableError`` naming what to install
    when its optional packages are missing (``check=False`` for listings)."""
    _known(name)
    return _BUILDERS.get(name) if check else next(e.target for e in _BUILDERS.entries() if e.name == name)


def dataset_missing(name: str) -> str | None:
    """Why the registered data set ``name`` cannot load here (a missing package), or None."""
    _known(name)
    return next(e.why_unavailable() for e in _BUILDERS.entries() if e.name == name)


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
    if builder.build is None:
        raise ValueError(f"data set {name!r} reads its own files and splits; open it with load_dataset")
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
    """One split of a data set, binned on first use: a ``torch.utils.data.Dataset`` of ``(frames, label)``.

    frames: float32 tensor ``(T, 2, H, W)`` (channel 0 OFF, 1 ON), label: int.
    Attributes: ``info`` (DatasetInfo), ``split``, ``stream`` (StreamInfo to record with a
    model), ``labels`` (np.int64 ``(N,)``), ``samples`` (the
    :class:`~stdl_edge.datasets.samples.Samples` read), ``frames`` (the uint8
    ``(N, T, 2, H, W)`` array behind ``__getitem__``, binned on first access, for fast
    batching), ``is_test`` (bool ``(N,)``), ``cache_path`` (bundled sets), ``meta`` (the build record).
    """

    def __init__(self, info: DatasetInfo, split: str, samples: Any, stream: StreamInfo, path: Path | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.info = info
        self.split = split
        self.stream = stream
        self.samples = samples
        self.cache_path = path
        self.meta = dict(meta or {})
        self.labels = np.asarray(samples.labels, dtype=np.int64)
        self.is_test = np.asarray(samples.is_test, dtype=bool)
        self._frames: np.ndarray | None = None

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            from .datasets.loader import bin_sample

            frames = np.zeros((len(self), self.stream.num_steps, *self.stream.sensor.frame_shape), dtype=np.uint8)
            for i in range(len(self)):
                frames[i] = bin_sample(self.samples.events(i), self.stream)
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self.labels)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for the {self.split} split of {self.info.name} "
                             f"({n} samples)")
        return i % n

    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i`` (a copy, EVENT_DTYPE, sorted, ``t`` from the sample's start)."""
        return self.samples.events(self._check_index(i))

    def num_events(self) -> np.ndarray:
        """Events per sample, int64 ``(N,)``."""
        return self.samples.num_events()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._check_index(i)
        if self._frames is None:  # one sample: bin it alone rather than the whole split
            from .datasets.loader import bin_sample

            return torch.from_numpy(bin_sample(self.events(i), self.stream).astype(np.float32)), int(self.labels[i])
        return torch.from_numpy(self._frames[i].astype(np.float32)), int(self.labels[i])

    def __repr__(self) -> str:
        return (f"EventDataset({self.info.name!r}, split={self.split!r}, samples={len(self)}, "
                f"steps={self.stream.num_steps}, dt_us={self.stream.dt_us}, bin_mode={self.stream.bin_mode!r})")


def load_dataset(name: str, split: str, *, num_steps: int | None = None, dt_us: int | None = None,
                 bin_mode: str = "binary", seed: int = 0, limit: int | None = None, rebuild: bool = False,
                 progress: Progress | None = None, root: str | os.PathLike | None = None,
                 sensor_size: tuple[int, int] | None = None, slicing: Any = None,
                 skip_bad: bool = False) -> EventDataset:
    """The ``split`` ("train", "test" or "all") of data set ``name``, binned into frames on first use.

    name: a registered data set (``digits-dvs``, ``nmnist``, a plug-in's) or ``folder:PATH``.
    num_steps, dt_us: binning (defaults from :func:`dataset_info`; give one and the other
    covers the sample duration). bin_mode: "binary" or "count". seed: generation and split of
    the generated sets. limit: a class-balanced subset of about that many samples (generated
    sets; its own cache file). rebuild: regenerate even if cached. progress: ``progress(done,
    total)`` while generating. root: where tonic data sets are (``--data-root``). sensor_size:
    (W, H) for a folder whose files do not say. slicing: a
    :class:`~stdl_edge.datasets.windows.Slicing` (or its dict) to cut recordings into windows.
    skip_bad: leave unreadable recordings out (counted) instead of stopping.
    """
    from .datasets import open_samples

    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    if bin_mode not in BIN_MODES:
        raise ValueError(f"bin_mode {bin_mode!r} is unknown; use one of {', '.join(BIN_MODES)}")
    samples, info, path, meta = open_samples(name, split, seed=seed, limit=limit, rebuild=rebuild, progress=progress,
                                             root=root, sensor_size=sensor_size, slicing=slicing, skip_bad=skip_bad)
    steps, dt = resolve_binning(info, num_steps, dt_us)
    stream = StreamInfo(sensor_size=tuple(samples.sensor_size), dt_us=dt, num_steps=steps, bin_mode=bin_mode,
                        class_names=samples.class_names)
    return EventDataset(info, split, samples, stream, path, meta)


# ----------------------------------------------------------------------------- batches


@dataclass
class TensorData:
    """A whole split in memory: ``frames (N, T, C, H, W)`` (uint8 for binary/count frames), ``labels (N,)``."""

    frames: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(T, B, C, H, W)`` float32 and labels ``(B,)`` on ``device``."""
        x = self.frames[index].to(device=device, dtype=torch.float32).transpose(0, 1).contiguous()
        return x, self.labels[index].to(device)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one frame."""
        return tuple(self.frames.shape[2:])

    def batches(self, batch_size: int, order: torch.Tensor | None = None, device: torch.device | str = "cpu",
                epoch: int = 0, shard: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`batch` after batch of ``batch_size`` samples, taken in ``order`` (default: all, in order).
        ``epoch`` is unused (frames in memory are not augmented; see :class:`stdl_edge.datasets.FrameData`).
        ``shard``: maps each batch's indices to the ones this process loads (a data-parallel rank's share)."""
        for index in batch_indices(len(self), batch_size, order, shard):
            yield self.batch(index, device)


def batch_indices(n: int, batch_size: int, order: torch.Tensor | None = None,
                  shard: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The sample indices of each batch of ``batch_size`` of ``n`` samples in ``order`` (default
    0..n-1), each mapped by ``shard`` when given (a data-parallel rank's share of the batch)."""
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} must be >= 1")
    order = torch.arange(n) if order is None else torch.as_tensor(order, dtype=torch.long)
    chunks = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    return [shard(c) for c in chunks] if shard is not None else chunks


def materialize(dataset: Dataset, limit: int | None = None, seed: int = 0) -> TensorData:
    """Load every sample of ``dataset`` (``(frames (T, C, H, W), label)``) into one tensor.

    With ``limit``, a seeded random subset of that size (same subset for every method).
    Integral frames with values in 0..255 are stored as uint8 (4x smaller).
    """
    n = len(dataset)
    order = torch.arange(n)
    if limit is not None and limit < n:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7))[:limit].sort().values
    if n == 0:
        raise ValueError("the data set is empty")
    array = getattr(dataset, "frames", None)  # EventDataset keeps its uint8 frames: index them directly
    if array is not None and getattr(array, "dtype", None) == np.uint8 and len(array) == n:
        labels = np.asarray(getattr(dataset, "labels"))[order.numpy()]
        return TensorData(torch.from_numpy(np.ascontiguousarray(array[order.numpy()])),
                          torch.as_tensor(labels, dtype=torch.long))
    frames, label_list = [], []
    for i in order.tolist():
        x, y = dataset[i]
        frames.append(torch.as_tensor(x))
        label_list.append(int(y))
    stacked = torch.stack(frames)
    if stacked.is_floating_point() and bool(((stacked == stacked.round()) & (stacked >= 0) & (stacked <= 255)).all()):
        stacked = stacked.to(torch.uint8)
    return TensorData(stacked, torch.tensor(label_list, dtype=torch.long))


# the bundled and tonic data sets register themselves; imported last because they build on the above
from . import bundled  # noqa: E402,F401
from .datasets_tonic import register_tonic_datasets  # noqa: E402

register_tonic_datasets()
