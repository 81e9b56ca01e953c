"""Registered data sets as labelled sources (``NAME:SPLIT``, e.g. ``digits-dvs:test``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from stdl_edge.events import SensorSize, as_events, validate_events

from .base import EventSource, ReadOptions, SourceError
from .registry import Format, register_format


class DatasetSource(EventSource):
    """A registered data set split (``digits-dvs:test``, ``nmnist:test``): samples with labels.

    ``chunks()`` concatenates the samples, sample ``i`` shifted to start at ``i * period_us``
    (``period_us`` = the data set's duration), so a windowed run sees one sample per window.
    """

    labelled = True

    def __init__(self, name: str, split: str, limit: int | None = None, **load_options: Any) -> None:
        from stdl_edge import data  # imported on use: it loads torch, and will read sources itself

        self.name = f"{name}:{split}"
        self.ds = data.load_dataset(name, split, **load_options)
        info = data.dataset_info(name)
        self.native_size = SensorSize(*info.sensor_size)
        self.class_names = tuple(info.class_names) or tuple(getattr(self.ds.stream, "class_names", ()) or ())
        self.period_us = int(info.duration_us)
        self.count = len(self.ds) if limit is None else min(int(limit), len(self.ds))

    @classmethod
    def open(cls, spec: str, options: ReadOptions) -> DatasetSource:
        """``NAME:SPLIT`` of a data set registered in :mod:`stdl_edge.data`; the tonic data sets are
        registered on first use."""
        from stdl_edge import data
        from stdl_edge.datasets_tonic import register_tonic_datasets

        from stdl_edge.datasets.folder import is_folder_name

        name, _, split = spec.rpartition(":")  # the split is last: folder:PATH:test
        if is_folder_name(name):
            return cls(name, split, limit=options.limit, **options.extra)
        if name not in data.DATASETS:
            register_tonic_datasets()
        if name not in data.DATASETS:
            raise SourceError(f"{spec!r} is neither a file nor a registered data set "
                              f"(known: {', '.join(data.DATASETS) or 'none'})")
        return cls(name, split, limit=options.limit, **options.extra)

    def samples(self) -> Iterator[tuple[np.ndarray, int]]:
        labels = np.asarray(self.ds.labels)
        for i in range(self.count):
            ev = as_events(self.ds.events(i))
            validate_events(ev, self.native_size)
            yield self.geometry.apply(ev, self.native_size), int(labels[i])

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        offset = 0
        for i in range(self.count):
            ev = as_events(self.ds.events(i)).copy()  # shifted below: never the data set's array
            period = self.period_us or (int(ev["t"].max()) + 1 if len(ev) else 1)
            ev["t"] += offset
            offset += period
            yield ev


register_format(Format("dataset", (), DatasetSource.open, None,
                       "NAME:SPLIT of a registered data set (digits-dvs:test, nmnist:test), with labels",
                       claims=lambda spec: ":" in spec and not Path(spec).exists()))
