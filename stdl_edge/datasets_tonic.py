"""Real DVS data sets read through tonic from files already on disk: N-MNIST, DVS Gesture,
CIFAR10-DVS and N-Caltech101.

Nothing is downloaded. Put the extracted data under one root folder, in tonic's layout::

    $STDL_EDGE_TONIC_ROOT/                      (or root=... / --root)
      NMNIST/Train/<digit>/*.bin, NMNIST/Test/<digit>/*.bin
      DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy, .../ibmGestureTest/...
      CIFAR10DVS/<class name>/*.aedat4
      NCALTECH101/Caltech101/<class name>/*.bin

Events are read by tonic's own dataset classes and readers (``tonic.io.read_mnist_file``,
``tonic.io.read_aedat4``), with tonic's download check replaced by a check that the
extracted folder exists, and binned with :func:`stdl_edge.binning.bin_events`, the
project's one binning function. Larger sensors can be reduced with tonic's
``Downsample`` (``downsample=k`` keeps every k x k pixel block as one pixel).

Splits: N-MNIST and DVS Gesture have official train/test splits. CIFAR10-DVS and
N-Caltech101 have none: ``test`` is every 10th recording of each class (in tonic's sorted
order), ``train`` the rest, so the split is deterministic and class-balanced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifact import StreamInfo
from .binning import BinSpec, bin_events
from .events import SensorSize, as_events, validate_events

if TYPE_CHECKING:
    from .data import DatasetInfo

ROOT_ENV = "STDL_EDGE_TONIC_ROOT"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class TonicSpec:
    """One tonic data set as stdl-edge sees it.

    name: stdl-edge name (``nmnist``); tonic_class: the class in ``tonic.datasets``.
    sensor_size: (W, H, P) of the recordings (N-Caltech101: the bounding size 240 x 180).
    dt_us, num_steps: default binning (microseconds per step, steps per sample).
    folder: path under the tonic class folder that must exist, per split ("{split}" filled in).
    official_split: whether tonic has train/test; otherwise every 10th recording is test.
    """

    name: str
    tonic_class: str
    sensor_size: tuple[int, int, int]
    dt_us: int
    num_steps: int
    folder: dict[str, str]
    official_split: bool
    class_names: tuple[str, ...] = ()
    summary: str = ""

    @property
    def duration_us(self) -> int:
        return self.dt_us * self.num_steps


SPECS: dict[str, TonicSpec] = {
    "nmnist": TonicSpec("nmnist", "NMNIST", (34, 34, 2), 10_000, 30, {"train": "Train", "test": "Test"}, True,
                        tuple(str(i) for i in range(10)), "N-MNIST: saccades over MNIST digits, 34x34 ATIS"),
    "dvs-gesture": TonicSpec("dvs-gesture", "DVSGesture", (128, 128, 2), 75_000, 20,
                             {"train": "ibmGestureTrain", "test": "ibmGestureTest"}, True,
                             ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                              "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
                              "arm_roll", "air_drums", "air_guitar", "other_gestures"),
                             "IBM DVS128 Gesture: 11 gestures, 128x128 DVS"),
    "cifar10-dvs": TonicSpec("cifar10-dvs", "CIFAR10DVS", (128, 128, 2), 50_000, 20, {"train": "", "test": ""},
                             False, ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"), "CIFAR10-DVS: moving CIFAR-10 images, 128x128 DVS"),
    "ncaltech101": TonicSpec("ncaltech101", "NCALTECH101", (240, 180, 2), 10_000, 30,
                             {"train": "Caltech101", "test": "Caltech101"}, False, (),
                             "N-Caltech101: saccades over Caltech101 images, ATIS (up to 240x180)"),
}


def tonic_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the tonic data set folders: ``root``, else ``$STDL_EDGE_TONIC_ROOT``."""
    if root is None:
        root = os.environ.get(ROOT_ENV)
    if not root:
        raise FileNotFoundError(f"tonic data sets need a root folder: pass root=... (--root) or set {ROOT_ENV} "
                                "to the folder that holds NMNIST/, DVSGesture/, CIFAR10DVS/, NCALTECH101/")
    return Path(root).expanduser()


def _tonic_class(spec: TonicSpec, root: Path, split: str) -> Any:
    """tonic's dataset class with the download replaced by a clear error and the archive check
    replaced by "the extracted folder exists"."""
    try:
        import tonic.datasets as td
    except ImportError:
        raise ImportError("tonic data sets need tonic: pip install 'stdl-edge[datasets]'") from None
    base = getattr(td, spec.tonic_class)
    folder = root / spec.tonic_class / spec.folder[split]

    class OnDisk(base):  # type: ignore[misc, valid-type]
        def _check_exists(self) -> bool:
            return folder.is_dir()

        def download(self) -> None:
            raise FileNotFoundError(f"{spec.name}: {folder} does not exist; download {spec.tonic_class} "
                                    f"yourself and extract it under {root} in tonic's layout "
                                    "(see stdl_edge/datasets_tonic.py)")

    OnDisk.__name__ = base.__name__  # tonic puts the data under root/<class name>
    return OnDisk


class TonicDataset:
    """One split of a tonic data set, binned for training and ``run``.

    ``ds[i]`` -> (frames float32 tensor ``(T, 2, H, W)``, label); ``ds.events(i)`` -> the
    EVENT_DTYPE events (after downsampling); ``ds.labels`` int64 ``(N,)``; ``ds.stream`` the
    :class:`StreamInfo` to record in a run.
    """

    def __init__(self, name: str, split: str, root: str | os.PathLike | None = None, *,
                 num_steps: int | None = None, dt_us: int | None = None, bin_mode: str = "binary",
                 downsample: int = 1, seed: int = 0) -> None:
        if name not in SPECS:
            raise KeyError(f"unknown tonic data set {name!r}; available: {', '.join(SPECS)}")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is unknown; use one of {SPLITS}")
        if int(downsample) != downsample or downsample < 1:
            raise ValueError(f"downsample={downsample} must be a whole number >= 1")
        self.spec = spec = SPECS[name]
        self.split = split
        self.root = tonic_root(root)
        self.downsample = int(downsample)
        cls = _tonic_class(spec, self.root, split)
        kwargs: dict[str, Any] = {}
        if spec.tonic_class in ("NMNIST", "DVSGesture"):
            kwargs["train"] = split == "train"
        self._tonic = cls(str(self.root), **kwargs)
        targets = list(self._tonic.targets)
        if spec.class_names:
            self.class_names = spec.class_names
            labels = np.asarray(targets, dtype=np.int64)
        else:  # N-Caltech101: targets are folder names
            self.class_names = tuple(sorted(set(targets)))
            index = {c: i for i, c in enumerate(self.class_names)}
            labels = np.asarray([index[t] for t in targets], dtype=np.int64)
        # tonic lists files in file-system order for some sets; sort by path so that sample i
        # (and the split) is the same on every machine
        order = np.argsort(np.asarray([str(p) for p in self._tonic.data]), kind="stable")
        if not spec.official_split:
            rank = np.zeros(len(labels), np.int64)  # position of each recording within its class
            for c in np.unique(labels):
                members = order[labels[order] == c]
                rank[members] = np.arange(len(members))
            test = rank[order] % 10 == 0
            order = order[test] if split == "test" else order[~test]
        if len(order) == 0:
            raise FileNotFoundError(f"{name}:{split}: no recordings under {self.root / spec.tonic_class}")
        self._index = order
        self.labels = labels[order]
        w, h, p = spec.sensor_size
        self.sensor_size = SensorSize(w // self.downsample, h // self.downsample, p)
        self.stream = StreamInfo(tuple(self.sensor_size), int(dt_us or spec.dt_us), int(num_steps or spec.num_steps),
                                 bin_mode, self.class_names)
        self._spec_bin = BinSpec(self.stream.dt_us, bin_mode)

    def __len__(self) -> int:
        return len(self._index)

    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i`` as EVENT_DTYPE, sorted, inside :attr:`sensor_size`."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} is out of range (0..{len(self) - 1})")
        raw, _ = self._tonic[int(self._index[i])]
        ev = as_events(raw)
        if len(ev) > 1 and (np.diff(ev["t"]) < 0).any():
            ev = ev[np.argsort(ev["t"], kind="stable")]
        if self.downsample > 1:
            from tonic.transforms import Downsample

            ev = Downsample(spatial_factor=1.0 / self.downsample)(ev)
            ev = ev[(ev["x"] < self.sensor_size.width) & (ev["y"] < self.sensor_size.height)]
        return validate_events(ev, self.sensor_size)

    def __getitem__(self, i: int):
        import torch

        frames = bin_events(self.events(i), self.sensor_size, self._spec_bin, num_steps=self.stream.num_steps)
        return torch.from_numpy(frames), int(self.labels[i])


def load_tonic_dataset(name: str, split: str, root: str | os.PathLike | None = None, **options: Any) -> TonicDataset:
    """Open ``split`` of tonic data set ``name`` from ``root`` (or ``$STDL_EDGE_TONIC_ROOT``)."""
    return TonicDataset(name, split, root, **options)


# --------------------------------------------------------------------------- registration

#: published number of recordings (train + test), for DatasetInfo.num_samples
_PUBLISHED = {"nmnist": 70_000, "dvs-gesture": 1_342, "cifar10-dvs": 10_000, "ncaltech101": 8_709}


def _builder_for(name: str, root: str | os.PathLike | None, downsample: int):
    """``build(seed, limit, progress) -> RawData`` for stdl_edge.data: every recording of both
    tonic splits (stdl_edge.data then makes its own stratified 80/20 split from the seed)."""

    def build(seed: int, limit: int | None, progress: Any = None):
        from .data import RawData, balanced_subset

        parts = [TonicDataset(name, split, root, downsample=downsample) for split in SPLITS]
        labels = np.concatenate([p.labels for p in parts])
        where = [(k, i) for k, p in enumerate(parts) for i in range(len(p))]
        pick = np.arange(len(labels)) if limit is None else balanced_subset(labels, limit, seed)
        events = []
        for n, j in enumerate(pick):
            k, i = where[int(j)]
            events.append(parts[k].events(i))
            if progress is not None:
                progress(n + 1, len(pick))
        return RawData(events, labels[pick])

    return build


#: registered names: (tonic data set, downsample factor); the "-32" variants fit small CPU models
VARIANTS = {"nmnist": ("nmnist", 1), "dvs-gesture": ("dvs-gesture", 1), "dvs-gesture-32": ("dvs-gesture", 4),
            "cifar10-dvs": ("cifar10-dvs", 1), "cifar10-dvs-32": ("cifar10-dvs", 4),
            "ncaltech101": ("ncaltech101", 1)}


def tonic_info(name: str, class_names: tuple[str, ...] | None = None) -> DatasetInfo:
    """The :class:`stdl_edge.data.DatasetInfo` of :data:`VARIANTS` entry ``name``, as registered;
    ``class_names`` replaces the spec's (N-Caltech101's are its folder names)."""
    from .data import DatasetInfo

    base, k = VARIANTS[name]
    spec = SPECS[base]
    w, h, p = spec.sensor_size
    return DatasetInfo(name=name, sensor_size=(w // k, h // k, p),
                       class_names=spec.class_names if class_names is None else class_names,
                       duration_us=spec.duration_us, dt_us=spec.dt_us, num_steps=spec.num_steps,
                       num_samples=_PUBLISHED[base],
                       description=spec.summary + (f", downsampled {k}x" if k > 1 else "")
                       + f" (tonic, files under ${ROOT_ENV}; not bundled)")


def register_tonic_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Register the tonic data sets in :mod:`stdl_edge.data` under the names of :data:`VARIANTS`,
    read (when loaded) from ``root`` or ``$STDL_EDGE_TONIC_ROOT``. They list as unavailable
    without tonic. N-Caltech101's classes are its folder names, so it is registered only when
    its folder is found now.

    The files are not touched until a data set is loaded; ``stdl-edge train --data nmnist`` and
    ``stdl-edge run ... --events nmnist:test`` then read them through tonic and cache them like
    the bundled sets. Returns the names registered.
    """
    from .data import DatasetBuilder, register_dataset

    names = []
    for name, (base, k) in VARIANTS.items():
        spec = SPECS[base]
        classes = spec.class_names
        if not classes:
            try:
                folder = tonic_root(root) / spec.tonic_class / spec.folder["train"]
            except FileNotFoundError:
                continue
            if not folder.is_dir():
                continue
            classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
            if not classes:
                continue
        builder = DatasetBuilder(tonic_info(name, classes), _builder_for(base, root, k), requires=("tonic",),
                                 extra="datasets")
        register_dataset(name, builder)
        names.append(name)
    return names


__all__ = ["ROOT_ENV", "SPECS", "VARIANTS", "TonicDataset", "load_tonic_dataset", "register_tonic_datasets",
           "tonic_info", "tonic_root"]
