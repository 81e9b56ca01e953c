"""Long recordings as fixed-length windows, cut by tonic's slicers instead of at ``T * dt``.

``Slicing("time", 1_500_000, overlap=500_000)`` cuts each recording into windows of 1.5 s that
start every 1 s (:class:`tonic.slicers.SliceByTime`); ``Slicing("events", 20_000)`` into windows
of 20,000 events (:class:`tonic.slicers.SliceByEventCount`). Each window is one sample with its
recording's label; its time 0 is the window's start (by time) or its first event (by events).
The window boundaries are found in one pass over the recordings and kept in the index cache
(:func:`.cache.cached_index`). The slicing is part of the run's training options
(``slice_by``, ``slice_length``, ``slice_overlap``), so ``verify`` cuts the test split the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cache import cached_index
from .samples import DataError, Samples, digest

SLICE_BY = ("time", "events")


@dataclass(frozen=True)
class Slicing:
    """How recordings are cut into windows.

    by: ``"time"`` (length and overlap in microseconds) or ``"events"`` (in events).
    length: window length (> 0). overlap: shared by consecutive windows (0 <= overlap < length).
    include_incomplete: keep the shorter last window of a recording.
    """

    by: str
    length: int
    overlap: int = 0
    include_incomplete: bool = False

    def __post_init__(self) -> None:
        if self.by not in SLICE_BY:
            raise DataError(f"--slice-by {self.by!r} is unknown; use time (microseconds) or events (event counts)")
        if int(self.length) != self.length or self.length < 1:
            raise DataError(f"--slice-length {self.length} must be a whole number >= 1")
        if int(self.overlap) != self.overlap or not 0 <= self.overlap < self.length:
            raise DataError(f"--slice-overlap {self.overlap} must be a whole number in [0, {self.length})")

    def slicer(self):
        try:
            from tonic import slicers
        except ImportError:
            raise ImportError("slicing recordings needs tonic: pip install 'stdl-edge[datasets]'") from None
        if self.by == "time":
            return slicers.SliceByTime(time_window=self.length, overlap=self.overlap,
                                       include_incomplete=self.include_incomplete)
        return slicers.SliceByEventCount(event_count=self.length, overlap=self.overlap,
                                         include_incomplete=self.include_incomplete)

    def to_dict(self) -> dict[str, object]:
        return {"by": self.by, "length": self.length, "overlap": self.overlap,
                "include_incomplete": self.include_incomplete}


def _windows(samples: Samples, slicing: Slicing) -> dict[str, list]:
    """``{"windows": [[sample, start index, stop index, t0, span_us], ...]}`` over every sample, in order."""
    slicer = slicing.slicer()
    rows = []
    for i in range(len(samples)):
        ev = samples.events(i)
        if len(ev) == 0:
            continue
        stride = slicing.length - slicing.overlap
        for k, (a, b) in enumerate(slicer.get_slice_metadata(ev, int(samples.labels[i]))):
            if b <= a:
                continue
            t0 = int(ev["t"][0]) + k * stride if slicing.by == "time" else int(ev["t"][a])
            rows.append([i, int(a), int(b), t0, int(ev["t"][b - 1]) - t0 + 1])
    return {"windows": rows}


class SlicedSamples(Samples):
    """``base`` cut into windows: sample ``j`` is window ``j``, labelled with its recording's label."""

    def __init__(self, base: Samples, slicing: Slicing) -> None:
        self.base, self.slicing = base, slicing
        self.name = base.name
        rows = cached_index("windows", [base.fingerprint(), slicing.to_dict()], lambda: _windows(base, slicing))
        if not rows["windows"]:
            raise DataError(f"{base.name}: slicing by {slicing.by} into windows of {slicing.length} gives no window "
                            "(every recording is shorter); use a shorter --slice-length or --slice-incomplete")
        self._rows = np.asarray(rows["windows"], dtype=np.int64)  # (N, 5): sample, start, stop, t0, span
        self.labels = base.labels[self._rows[:, 0]]
        self.is_test = base.is_test[self._rows[:, 0]]
        self.sensor_size, self.class_names = base.sensor_size, base.class_names
        self.skipped = list(getattr(base, "skipped", []))
        if slicing.by == "time":
            self.duration_us = int(slicing.length)
        else:
            self.duration_us = int(self._rows[:, 4].max())
        self._last: tuple[int, np.ndarray] | None = None  # consecutive windows of one recording read it once

    def events(self, j: int) -> np.ndarray:
        i, a, b, t0, _ = (int(v) for v in self._rows[self.check_index(j)])
        if self._last is None or self._last[0] != i:
            self._last = (i, self.base.events(i))
        ev = self._last[1][a:b].copy()
        ev["t"] -= t0
        return ev

    def where(self, j: int) -> str:
        i, a, b, _, _ = (int(v) for v in self._rows[self.check_index(j)])
        return f"{self.base.where(i)} events {a}:{b}"

    def num_events(self) -> np.ndarray:
        return self._rows[:, 2] - self._rows[:, 1]

    def recording(self, j: int) -> int:
        """Index in the base samples of the recording window ``j`` comes from."""
        return int(self._rows[self.check_index(j), 0])

    def fingerprint(self) -> str:
        return digest([self.base.fingerprint(), self.slicing.to_dict()])
