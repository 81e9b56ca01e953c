"""Registered data sets as labelled sources (``NAME:SPLIT``, e.g. ``digits-dvs:test``)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from stdl_edge.events import SensorSize, as_events, validate_events

from .base import EventSource


class DatasetSource(EventSource):
    """A registered data set split (``digits-dvs:test``, ``nmnist:test``): samples with labels.

    ``chunks()`` concatenates the samples, sample ``i`` shifted to start at ``i * period_us``
    (``period_us`` = the data set's duration), so a windowed run sees one sample per window.
    """

    labelled = True

    def __init__(self, name: str, split: str, limit: int | None = None, **load_options: Any) -> None:
        from stdl_edge import data

        self.name = f"{name}:{split}"
        self.ds = data.load_dataset(name, split, **load_options)
        info = data.dataset_info(name)
        self.native_size = SensorSize(*info.sensor_size)
        self.class_names = tuple(getattr(info, "class_names", ()) or ())
        self.period_us = int(getattr(info, "duration_us", 0) or 0)
        self.count = len(self.ds) if limit is None else min(int(limit), len(self.ds))

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
