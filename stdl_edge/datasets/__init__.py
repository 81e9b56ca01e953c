"""Data sets beyond memory: one place for each step between recordings on disk and training batches.

=================  ==================================================================
``samples``        :class:`Samples`: a split as labelled recordings read one at a time
``folder``         ``folder:PATH``: the user's recordings, one subfolder per class
``windows``        :class:`Slicing`: long recordings cut into windows (tonic's slicers)
``augment``        tonic transforms on training samples, seeded
``cache``          scan indexes and the disk cache of binned frames
``loader``         :class:`FrameData`: DataLoader batches, binned on the fly or from the cache
``plugins``        data sets from other packages (``stdl_edge.datasets`` entry points)
=================  ==================================================================

The registry of named data sets, the bundled generated sets and the in-memory path stay in
:mod:`stdl_edge.data` (``load_dataset``, ``materialize``); the tonic data sets in
:mod:`stdl_edge.datasets_tonic`. :func:`open_samples` is the one function that turns a data-set
name and its options into :class:`Samples`; ``load_dataset`` and the trainer both call it.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import numpy as np

from .folder import FolderSamples, canonical, is_folder_name
from .samples import ArraySamples, DataError, JoinedSamples, Samples, SubsetSamples, readable
from .windows import Slicing, SlicedSamples

#: time steps of a folder data set's default binning (over its longest recording or window)
FOLDER_STEPS = 16


def _as_slicing(slicing: Any) -> Slicing | None:
    if slicing is None or isinstance(slicing, Slicing):
        return slicing
    if isinstance(slicing, dict):
        return Slicing(**slicing)
    raise DataError(f"slicing={slicing!r} must be a Slicing or a dict with by, length, overlap")


def _limited(samples: Samples, limit: int | None, split: str, seed: int) -> Samples:
    """About ``limit`` samples over train + test (80/20), class-balanced, as ``--limit`` does for generated sets."""
    if limit is None:
        return samples
    from ..data import TEST_FRACTION, balanced_subset

    share = {"train": 1 - TEST_FRACTION, "test": TEST_FRACTION}.get(split, 1.0)
    want = max(len(samples.class_names) or 1, int(round(limit * share)))
    if want >= len(samples):
        return samples
    return SubsetSamples(samples, balanced_subset(samples.labels, want, seed))


def folder_info(name: str, sensor_size: tuple[int, int] | None = None, skip_bad: bool = False):
    """The :class:`stdl_edge.data.DatasetInfo` of ``folder:PATH`` (from its train split)."""
    from ..data import DatasetInfo

    train = FolderSamples(name, "train", sensor_size=sensor_size, skip_bad=skip_bad)
    return _open_info(DatasetInfo, canonical(name), train, official=train.official_split)


def _open_info(cls: Any, name: str, samples: Samples, official: bool):
    duration = int(samples.duration_us)
    return cls(name=name, sensor_size=tuple(samples.sensor_size), class_names=samples.class_names,
               duration_us=duration, dt_us=max(1, math.ceil(duration / FOLDER_STEPS)), num_steps=FOLDER_STEPS,
               num_samples=len(samples), description=f"recordings under {name[len('folder:'):]} ("
               + ("train/ and test/ folders" if official else "seeded stratified 80/20 split") + ")")


def load_options(train: dict[str, Any]) -> dict[str, Any]:
    """The options that rebuild a run's data set (:func:`stdl_edge.data.load_dataset` keywords) from its
    training options (``TrainConfig.to_dict()``, ``stdl.train`` in a run record): the data root, a
    folder's sensor size, the slicing into windows, ``skip_bad``. Absent keys (older runs) are left out."""
    out: dict[str, Any] = {}
    if train.get("data_root"):
        out["root"] = str(train["data_root"])
    if train.get("sensor_size"):
        out["sensor_size"] = tuple(int(v) for v in train["sensor_size"])
    if train.get("slice_by"):
        out["slicing"] = {"by": str(train["slice_by"]), "length": int(train["slice_length"]),
                          "overlap": int(train.get("slice_overlap") or 0)}
    if train.get("skip_bad"):
        out["skip_bad"] = True
    return out


def open_samples(name: str, split: str, *, seed: int = 0, limit: int | None = None, rebuild: bool = False,
                 progress: Any = None, root: str | os.PathLike | None = None,
                 sensor_size: tuple[int, int] | None = None, slicing: Any = None,
                 skip_bad: bool = False) -> tuple[Samples, Any, Any, dict[str, Any]]:
    """``(samples, info, cache path or None, build record)`` of ``split`` of data set ``name``.

    name: registered (bundled, tonic, plug-in) or ``folder:PATH``. The other options are
    :func:`stdl_edge.data.load_dataset`'s. ``info`` has the data set's default binning, its
    duration being the window length when sliced by time.
    """
    from ..data import DatasetInfo, build_dataset, dataset_entry

    parts = ("train", "test") if split == "all" else (split,)
    slicing = _as_slicing(slicing)
    path, meta = None, {}
    if is_folder_name(name):
        name = canonical(name)
        opened = [FolderSamples(name, s, sensor_size=sensor_size, skip_bad=skip_bad) for s in parts]
        info = _open_info(DatasetInfo, name, opened[0], opened[0].official_split)
    else:
        builder = dataset_entry(name, check=False)
        if builder.build is not None:
            stored, path = build_dataset(name, seed=seed, limit=limit, rebuild=rebuild, progress=progress)
            info, meta = builder.info, dict(stored.meta)
            parts = (split,)  # "all" keeps the generated order
            index = np.arange(len(stored.labels)) if split == "all" else np.flatnonzero(stored.is_test == (split == "test"))
            opened = [ArraySamples(f"{name}:{split}", stored.events, stored.offsets, stored.labels, stored.is_test,
                                   index, info.sensor, info.class_names, info.duration_us, str(path.name))]
            limit = None  # the generated subset is already limited
        else:
            dataset_entry(name)  # says what to install when tonic is missing
            opened = [builder.open(s, {"root": root}) for s in parts]
            info = replace(builder.info, sensor_size=tuple(opened[0].sensor_size), class_names=opened[0].class_names)
        if skip_bad:
            opened = [readable(s) for s in opened]
    opened = [_limited(s, limit, p, seed) for s, p in zip(opened, parts)]
    if slicing is not None:
        opened = [SlicedSamples(s, slicing) for s in opened]
        window = int(slicing.length) if slicing.by == "time" else max(s.duration_us for s in opened)
        info = replace(info, duration_us=window, dt_us=max(1, math.ceil(window / info.num_steps)))
    samples = opened[0] if len(opened) == 1 else JoinedSamples(f"{info.name}:all", *opened)
    return samples, info, path, meta


__all__ = ["DataError", "FolderSamples", "Samples", "Slicing", "SlicedSamples", "folder_info", "load_options",
           "open_samples"]
