"""Real DVS data sets read through tonic from files already on disk, with their official splits.

Nothing is downloaded. Put the extracted data under one root folder, in tonic's layout::

    $STDL_EDGE_DATA_ROOT/                        (or --data-root; default ~/.cache/stdl-edge/data)
      NMNIST/Train/<digit>/*.bin, NMNIST/Test/<digit>/*.bin                    official split
      DVSGesture/ibmGestureTrain/user<NN>_<light>/<label>.npy, .../ibmGestureTest/...    official
      DVSLip/DVS-Lip/train/<word>/*.npy, DVSLip/DVS-Lip/test/<word>/*.npy        official
      POKERDVS/pips_train/<suit>/*.npy, POKERDVS/pips_test/<suit>/*.npy          official
      CIFAR10DVS/<class name>/*.aedat4                                           no split
      NCALTECH101/Caltech101/<class name>/*.bin                                  no split
      ASLDVS/<letter>/*.mat                                                      no split

(``$STDL_EDGE_TONIC_ROOT``, the older name, is read when ``$STDL_EDGE_DATA_ROOT`` is unset.)
Events are read by tonic's own dataset classes (``tonic.datasets.NMNIST``, ...) with tonic's
download replaced by "the extracted folder exists", and binned with
:func:`stdl_edge.binning.bin_events`, the project's one binning function. Larger sensors can
be reduced with tonic's ``Downsample`` (the ``-32`` variants keep every 4 x 4 block as one pixel).

Splits: where the data set has official train and test folders they are the splits, as
published. Where it has none, the split is seeded and stratified: in each class
``round(0.2 n)`` recordings (tonic's order, sorted by path) are test, drawn with seed 0
(:func:`stdl_edge.data.stratified_split`), the same on every machine.

Each data set registers in :mod:`stdl_edge.data` under its name (``nmnist``, ``dvs-gesture``,
...), so ``train --dataset``, ``data``, ``verify`` and ``run --events nmnist:test`` all take it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import StreamInfo
from .binning import BinSpec, bin_events
from .datasets.samples import DataError, Samples, digest
from .events import SensorSize, as_events, validate_events

ROOT_ENV = "STDL_EDGE_DATA_ROOT"
#: the variable's earlier name, read when ROOT_ENV is unset
LEGACY_ROOT_ENV = "STDL_EDGE_TONIC_ROOT"
SPLITS = ("train", "test")
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class TonicSpec:
    """One tonic data set as stdl-edge sees it.

    name: stdl-edge name (``nmnist``); tonic_class: the class in ``tonic.datasets``.
    sensor_size: (W, H, P) of the recordings (N-Caltech101: the bounding size 240 x 180).
    dt_us, num_steps: default binning (microseconds per step, steps per sample).
    folder: path under ``<root>/<tonic_class>`` that holds each split ("train", "test").
    official_split: whether those are the published splits; otherwise both name the one folder
        of all recordings and the split is seeded and stratified (module docstring).
    class_names: label order (empty: the sorted folder names, N-Caltech101).
    url: where to get the data.
    """

    name: str
    tonic_class: str
    sensor_size: tuple[int, int, int]
    dt_us: int
    num_steps: int
    folder: dict[str, str]
    official_split: bool
    class_names: tuple[str, ...]
    summary: str
    url: str
    num_samples: int

    @property
    def duration_us(self) -> int:
        return self.dt_us * self.num_steps


def _class_names(tonic_class: str) -> tuple[str, ...]:
    """Label order as tonic assigns it, without importing tonic when the list is fixed here."""
    fixed = {
        "NMNIST": tuple(str(i) for i in range(10)),
        "DVSGesture": ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                       "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
                       "air_drums", "air_guitar", "other_gestures"),
        "CIFAR10DVS": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "ASLDVS": tuple(chr(c) for c in range(97, 123)),
        "POKERDVS": ("cl", "he", "di", "sp"),
    }
    return fixed.get(tonic_class, ())


SPECS: dict[str, TonicSpec] = {s.name: s for s in (
    TonicSpec("nmnist", "NMNIST", (34, 34, 2), 10_000, 30, {"train": "Train", "test": "Test"}, True,
              _class_names("NMNIST"), "N-MNIST: saccades over MNIST digits, 34x34 ATIS",
              "https://www.garrickorchard.com/datasets/n-mnist", 70_000),
    TonicSpec("dvs-gesture", "DVSGesture", (128, 128, 2), 75_000, 20,
              {"train": "ibmGestureTrain", "test": "ibmGestureTest"}, True, _class_names("DVSGesture"),
              "IBM DVS128 Gesture: 11 gestures, 128x128 DVS", "https://research.ibm.com/interactive/dvsgesture/", 1_342),
    TonicSpec("dvs-lip", "DVSLip", (128, 128, 2), 50_000, 20,
              {"train": "DVS-Lip/train", "test": "DVS-Lip/test"}, True, (),
              "DVS-Lip: 100 spoken words, lips on a 128x128 DAVIS",
              "https://sites.google.com/view/event-based-lipreading", 19_871),
    TonicSpec("poker-dvs", "POKERDVS", (35, 35, 2), 1_000, 20, {"train": "pips_train", "test": "pips_test"}, True,
              _class_names("POKERDVS"), "POKER-DVS: card suits flipped past a 35x35 crop of a DVS",
              "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html", 131),
    TonicSpec("cifar10-dvs", "CIFAR10DVS", (128, 128, 2), 50_000, 20, {"train": "", "test": ""}, False,
              _class_names("CIFAR10DVS"), "CIFAR10-DVS: moving CIFAR-10 images, 128x128 DVS",
              "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671", 10_000),
    TonicSpec("ncaltech101", "NCALTECH101", (240, 180, 2), 10_000, 30, {"train": "Caltech101", "test": "Caltech101"},
              False, (), "N-Caltech101: saccades over Caltech101 images, ATIS (up to 240x180)",
              "https://www.garrickorchard.com/datasets/n-caltech101", 8_709),
    TonicSpec("asl-dvs", "ASLDVS", (240, 180, 2), 10_000, 20, {"train": "", "test": ""}, False,
              _class_names("ASLDVS"), "ASL-DVS: 24 American sign language letters (labels a-z as tonic has them), 240x180 DAVIS",
              "https://github.com/PIX2NVS/NVS2Graph", 100_800),
)}

#: registered names: (tonic data set, downsample factor); the "-32" variants fit small CPU models
VARIANTS = {"nmnist": ("nmnist", 1), "dvs-gesture": ("dvs-gesture", 1), "dvs-gesture-32": ("dvs-gesture", 4),
            "dvs-lip": ("dvs-lip", 1), "dvs-lip-32": ("dvs-lip", 4), "poker-dvs": ("poker-dvs", 1),
            "cifar10-dvs": ("cifar10-dvs", 1), "cifar10-dvs-32": ("cifar10-dvs", 4),
            "ncaltech101": ("ncaltech101", 1), "asl-dvs": ("asl-dvs", 1)}


def tonic_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the data set folders: ``root``, else ``$STDL_EDGE_DATA_ROOT`` (or
    ``$STDL_EDGE_TONIC_ROOT``), else ``<cache>/data`` (:func:`stdl_edge.data.cache_dir`)."""
    if root is None or str(root) == "":
        root = os.environ.get(ROOT_ENV) or os.environ.get(LEGACY_ROOT_ENV)
    if not root:
        from .data import cache_dir

        return cache_dir() / "data"
    return Path(root).expanduser()


def split_folder(spec: TonicSpec, root: Path, split: str) -> Path:
    return root / spec.tonic_class / spec.folder[split]


def missing_message(spec: TonicSpec, folder: Path, root: Path) -> str:
    """The one line for data that is not there: the folder, where to get it, how to point at it."""
    return (f"{spec.name}: {folder} does not exist; get {spec.tonic_class} from {spec.url} (or "
            f"`python -c \"import tonic; tonic.datasets.{spec.tonic_class}('{root}')\"`), extract it so that "
            f"{folder} exists, or point --data-root / ${ROOT_ENV} at the folder holding {spec.tonic_class}/")


def _tonic_class(spec: TonicSpec, root: Path, split: str) -> Any:
    """tonic's dataset class with the download replaced by a clear error and the archive check
    replaced by "the extracted folder exists"."""
    try:
        import tonic.datasets as td
    except ImportError:
        raise ImportError("tonic data sets need tonic: pip install 'stdl-edge[datasets]'") from None
    base = getattr(td, spec.tonic_class)
    folder = split_folder(spec, root, split)

    class OnDisk(base):  # type: ignore[misc, valid-type]
        def _check_exists(self) -> bool:
            return folder.is_dir()

        def download(self) -> None:
            raise FileNotFoundError(missing_message(spec, folder, root))

    OnDisk.__name__ = base.__name__  # tonic puts the data under root/<class name>
    return OnDisk


class TonicDataset(Samples):
    """One split of a tonic data set (a :class:`~stdl_edge.datasets.samples.Samples`).

    ``ds.events(i)`` -> the EVENT_DTYPE events (after downsampling); ``ds.labels`` int64 ``(N,)``;
    ``ds[i]`` -> (frames float32 tensor ``(T, 2, H, W)``, label) binned as ``ds.stream``;
    ``ds.where(i)`` the file.
    """

    def __init__(self, name: str, split: str, root: str | os.PathLike | None = None, *,
                 num_steps: int | None = None, dt_us: int | None = None, bin_mode: str = "binary",
                 downsample: int = 1) -> None:
        if name not in SPECS:
            raise DataError(f"unknown tonic data set {name!r}; available: {', '.join(SPECS)}")
        if split not in SPLITS:
            raise DataError(f"split {split!r} is unknown; use one of {SPLITS}")
        if int(downsample) != downsample or downsample < 1:
            raise DataError(f"downsample={downsample} must be a whole number >= 1")
        self.spec = spec = SPECS[name]
        self.split = split
        self.name = f"{name}:{split}"
        self.root = tonic_root(root)
        self.downsample = int(downsample)
        folder = split_folder(spec, self.root, split)
        if not folder.is_dir():
            raise FileNotFoundError(missing_message(spec, folder, self.root))
        cls = _tonic_class(spec, self.root, split)
        kwargs: dict[str, Any] = {"train": split == "train"} if spec.official_split else {}
        self._tonic = cls(str(self.root), **kwargs)
        targets = list(self._tonic.targets)
        names = spec.class_names or tuple(getattr(self._tonic, "classes", ()) or ())
        if names and all(isinstance(t, (int, np.integer)) for t in targets):
            self.class_names = tuple(str(c) for c in names)
            labels = np.asarray(targets, dtype=np.int64)
        else:  # N-Caltech101: targets are folder names
            self.class_names = tuple(sorted({str(t) for t in targets}))
            index = {c: i for i, c in enumerate(self.class_names)}
            labels = np.asarray([index[str(t)] for t in targets], dtype=np.int64)
        # tonic lists files in file-system order for some sets; sort by path so that sample i
        # (and the split) is the same on every machine
        paths = [str(p) if isinstance(p, (str, os.PathLike)) else f"#{k}" for k, p in enumerate(self._tonic.data)]
        order = np.argsort(np.asarray(paths, dtype=object).astype(str), kind="stable")
        if not spec.official_split and len(order):
            from .data import stratified_split

            is_test = stratified_split(labels[order], SPLIT_SEED, TEST_FRACTION)
            order = order[is_test == (split == "test")]
        if len(order) == 0:
            raise FileNotFoundError(f"{name}:{split}: no recordings under {folder}; "
                                    + missing_message(spec, folder, self.root).split("; ", 1)[1])
        self._index = order
        self._paths = [paths[k] for k in order]
        self.labels = labels[order]
        self.is_test = np.full(len(order), split == "test")
        w, h, p = spec.sensor_size
        self.sensor_size = SensorSize(w // self.downsample, h // self.downsample, p)
        self.duration_us = spec.duration_us
        self.stream = StreamInfo(tuple(self.sensor_size), int(dt_us or spec.dt_us), int(num_steps or spec.num_steps),
                                 bin_mode, self.class_names)
        self._spec_bin = BinSpec(self.stream.dt_us, bin_mode)

    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i`` as EVENT_DTYPE, sorted, inside :attr:`sensor_size`."""
        i = self.check_index(i)
        try:
            raw, _ = self._tonic[int(self._index[i])]
            ev = as_events(np.ravel(raw))  # ASL-DVS: tonic keeps the (N, 1) columns of the .mat file
        except (ValueError, OSError, KeyError, IndexError) as e:
            raise DataError(f"{self._paths[i]}: tonic cannot read it ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "fix or remove the file, or pass --skip-bad to leave unreadable recordings out") from None
        if len(ev) > 1 and (np.diff(ev["t"]) < 0).any():
            ev = ev[np.argsort(ev["t"], kind="stable")]
        if self.downsample > 1:
            from tonic.transforms import Downsample

            ev = Downsample(spatial_factor=1.0 / self.downsample)(ev)
            ev = ev[(ev["x"] < self.sensor_size.width) & (ev["y"] < self.sensor_size.height)]
        return validate_events(ev, self.sensor_size)

    def where(self, i: int) -> str:
        return self._paths[self.check_index(i)]

    def fingerprint(self) -> str:
        stats = []
        for p in self._paths:
            try:
                st = os.stat(p)
                stats.append((p, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((p, -1, -1))
        return digest([self.name, self.downsample, stats, self.labels.tolist()])

    def __getitem__(self, i: int):
        import torch

        frames = bin_events(self.events(i), self.sensor_size, self._spec_bin, num_steps=self.stream.num_steps)
        return torch.from_numpy(frames), int(self.labels[i])


def load_tonic_dataset(name: str, split: str, root: str | os.PathLike | None = None, **options: Any) -> TonicDataset:
    """Open ``split`` of tonic data set ``name`` from ``root`` (or ``$STDL_EDGE_DATA_ROOT``)."""
    return TonicDataset(name, split, root, **options)


# --------------------------------------------------------------------------- registration


def tonic_info(name: str, class_names: tuple[str, ...] | None = None):
    """The :class:`stdl_edge.data.DatasetInfo` of :data:`VARIANTS` entry ``name``, as registered;
    ``class_names`` replaces the spec's (N-Caltech101's and DVS-Lip's come from the files)."""
    from .data import DatasetInfo

    base, k = VARIANTS[name]
    spec = SPECS[base]
    w, h, p = spec.sensor_size
    return DatasetInfo(name=name, sensor_size=(w // k, h // k, p),
                       class_names=spec.class_names if class_names is None else class_names,
                       duration_us=spec.duration_us, dt_us=spec.dt_us, num_steps=spec.num_steps,
                       num_samples=spec.num_samples,
                       description=spec.summary + (f", downsampled {k}x" if k > 1 else "")
                       + f" (tonic; {'official split' if spec.official_split else 'seeded stratified 80/20 split'})")


def _opener(base: str, k: int):
    def open_split(split: str, options: dict[str, Any]) -> TonicDataset:
        return TonicDataset(base, split, options.get("root"), downsample=k)

    return open_split


def _where(base: str):
    def where(options: dict[str, Any]) -> tuple[str, bool]:
        spec = SPECS[base]
        root = tonic_root(options.get("root"))
        folders = {split_folder(spec, root, s) for s in SPLITS}
        return ", ".join(str(f) for f in sorted(folders)), all(f.is_dir() for f in folders)

    return where


def register_tonic_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Register the tonic data sets in :mod:`stdl_edge.data` under the names of :data:`VARIANTS`
    (they list as unavailable without tonic). The files are read when a split is loaded, from
    the ``root`` given to the loader (``--data-root``) or ``$STDL_EDGE_DATA_ROOT``; ``root`` here
    is accepted for compatibility and not stored. Returns the names registered."""
    from .data import DatasetBuilder, register_dataset

    del root
    names = []
    for name, (base, k) in VARIANTS.items():
        builder = DatasetBuilder(tonic_info(name), requires=("tonic",), extra="datasets", open=_opener(base, k),
                                 where=_where(base))
        register_dataset(name, builder)
        names.append(name)
    return names


__all__ = ["LEGACY_ROOT_ENV", "ROOT_ENV", "SPECS", "VARIANTS", "TonicDataset", "load_tonic_dataset",
           "missing_message", "register_tonic_datasets", "tonic_info", "tonic_root"]
