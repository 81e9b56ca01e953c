"""A split as a list of labelled event recordings, read one at a time.

:class:`Samples` is what every data set opens to (bundled, tonic, a folder, a plug-in), and
what slicing, the frame cache and the streaming loader take: ``len(s)``, ``s.labels`` (int64
``(N,)``), ``s.events(i)`` (EVENT_DTYPE, sorted, inside ``s.sensor_size``), ``s.where(i)``
(the file or sample, for messages), ``s.class_names`` and ``s.fingerprint()`` (changes when the
recordings do; keys the caches). Nothing is held in memory beyond what a subclass keeps.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..events import SensorSize


class DataError(ValueError):
    """A data set cannot be read as asked: a missing folder, an empty class, a corrupt file, a bad option
    (a user error: one line naming the file or value and the fix)."""


class Samples(ABC):
    """One split of a data set: ``labels (N,)`` and ``events(i)`` read on demand.

    name: ``"<data set>:<split>"``. sensor_size: ``SensorSize(W, H, P)`` of every sample.
    class_names: one per label. duration_us: nominal length of a sample in microseconds (the
    longest one, or the window length when sliced). is_test: bool ``(N,)``, True for samples
    of the test split (all False or all True except for ``"all"``).
    """

    name: str
    sensor_size: SensorSize
    class_names: tuple[str, ...]
    labels: np.ndarray
    duration_us: int
    is_test: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i``: EVENT_DTYPE, sorted by ``t``, inside :attr:`sensor_size`."""

    def where(self, i: int) -> str:
        """Where sample ``i`` comes from (a file path), for error messages."""
        return f"{self.name} sample {i}"

    def num_events(self) -> np.ndarray:
        """Events per sample, int64 ``(N,)`` (reads every sample unless a subclass knows)."""
        return np.array([len(self.events(i)) for i in range(len(self))], dtype=np.int64)

    @abstractmethod
    def fingerprint(self) -> str:
        """A text that changes whenever the recordings or labels do (keys the caches)."""

    def check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for {self.name} ({n} samples)")
        return int(i) % n


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (cache keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ArraySamples(Samples):
    """Samples whose events are already in memory: ``events[offsets[j]:offsets[j + 1]]`` for ``j`` in ``index``.

    The bundled data sets (their cached ``.npz``) and builder plug-ins open to this.
    """

    def __init__(self, name: str, events: np.ndarray, offsets: np.ndarray, labels: np.ndarray, is_test: np.ndarray,
                 index: np.ndarray, sensor_size: SensorSize, class_names: tuple[str, ...], duration_us: int,
                 key: str) -> None:
        self.name = name
        self._events, self._offsets, self._index = events, offsets, np.asarray(index, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)[self._index].copy()
        self.is_test = np.asarray(is_test, dtype=bool)[self._index].copy()
        self.sensor_size = SensorSize(*sensor_size)
        self.class_names = tuple(class_names)
        self.duration_us = int(duration_us)
        self._key = key

    def events(self, i: int) -> np.ndarray:
        j = int(self._index[self.check_index(i)])
        return self._events[self._offsets[j]:self._offsets[j + 1]].copy()

    def num_events(self) -> np.ndarray:
        return np.diff(self._offsets)[self._index]

    def fingerprint(self) -> str:
        return digest([self._key, self._index.tolist()])


class JoinedSamples(Samples):
    """The ``"all"`` split: the train samples, then the test samples."""

    def __init__(self, name: str, train: Samples, test: Samples) -> None:
        if tuple(train.sensor_size) != tuple(test.sensor_size):
            raise DataError(f"{name}: train and test recordings have different sensors ({tuple(train.sensor_size)} "
                            f"vs {tuple(test.sensor_size)}); give --sensor-size W,H")
        self.name = name
        self.parts = (train, test)
        self.labels = np.concatenate([train.labels, test.labels])
        self.is_test = np.concatenate([np.zeros(len(train), bool), np.ones(len(test), bool)])
        self.sensor_size = train.sensor_size
        self.class_names = train.class_names
        self.duration_us = max(train.duration_us, test.duration_us)

    def _part(self, i: int) -> tuple[Samples, int]:
        i = self.check_index(i)
        n = len(self.parts[0])
        return (self.parts[0], i) if i < n else (self.parts[1], i - n)

    def events(self, i: int) -> np.ndarray:
        part, j = self._part(i)
        return part.events(j)

    def where(self, i: int) -> str:
        part, j = self._part(i)
        return part.where(j)

    def num_events(self) -> np.ndarray:
        return np.concatenate([p.num_events() for p in self.parts])

    def fingerprint(self) -> str:
        return digest([p.fingerprint() for p in self.parts])


class SubsetSamples(Samples):
    """``base`` restricted to the samples ``index`` (in that order)."""

    def __init__(self, base: Samples, index: np.ndarray, skipped: list[tuple[str, str]] | None = None) -> None:
        self.base = base
        self._index = np.asarray(index, dtype=np.int64)
        self.name = base.name
        self.labels = base.labels[self._index]
        self.is_test = base.is_test[self._index]
        self.sensor_size, self.class_names, self.duration_us = base.sensor_size, base.class_names, base.duration_us
        self.skipped = list(getattr(base, "skipped", [])) + list(skipped or [])

    def events(self, i: int) -> np.ndarray:
        return self.base.events(int(self._index[self.check_index(i)]))

    def where(self, i: int) -> str:
        return self.base.where(int(self._index[self.check_index(i)]))

    def num_events(self) -> np.ndarray:
        return self.base.num_events()[self._index]

    def fingerprint(self) -> str:
        return digest([self.base.fingerprint(), self._index.tolist()])


def readable(samples: Samples) -> SubsetSamples:
    """The samples that can be read (one pass, kept in the index cache); the others are counted in
    ``skipped`` as ``(where, reason)``."""
    from .cache import cached_index

    def scan() -> dict[str, Any]:
        good, bad = [], []
        for i in range(len(samples)):
            try:
                samples.events(i)
                good.append(i)
            except (ValueError, OSError) as e:
                bad.append([samples.where(i), str(e).splitlines()[0] if str(e) else type(e).__name__])
        return {"good": good, "bad": bad}

    found = cached_index("readable", samples.fingerprint(), scan)
    return SubsetSamples(samples, np.asarray(found["good"], dtype=np.int64), [tuple(b) for b in found["bad"]])
