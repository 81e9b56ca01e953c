"""Streaming training data: a torch ``DataLoader`` with workers over samples binned on the fly or read
from the disk cache of binned frames, so a data set larger than memory trains.

:class:`FrameData` has the interface of :class:`stdl_edge.data.TensorData` that the trainer uses
(``len``, ``labels``, ``frame_shape``, ``batches(batch_size, order, device, epoch)`` yielding
``(T, B, C, H, W)`` float32 frames and ``(B,)`` labels), with one sample per item in memory:

- ``mode="stream"``: each sample's events are read, augmented (training split only,
  :class:`.augment.Augmenter`, seeded by ``(seed, epoch, sample)``) and binned with
  :func:`stdl_edge.binning.bin_events` in the workers, every epoch;
- ``mode="cache"``: the split is binned once into :mod:`.cache` (keyed by the binning
  parameters, rebuilt when they change) and samples are read back with ``os.pread``.

``workers`` DataLoader worker processes share the reading and binning (0: in the main process);
they start with the first pass and stay up for the next ones (``persistent_workers``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..artifact import StreamInfo
from ..binning import bin_events
from .augment import Augmenter
from .cache import FrameCache, frames_folder, open_frame_cache, write_frame_cache
from .samples import DataError, Samples

MODES = ("stream", "cache")


def choose_loader(loader: str, generated: bool, augment: bool) -> str:
    """The loader for ``loader`` ("auto", "memory", "stream", "cache"): "auto" keeps generated (bundled)
    sets in memory as before, streams when augmenting, and reads other data sets from the frame cache."""
    if loader == "auto":
        return "stream" if augment else "memory" if generated else "cache"
    if augment and loader != "stream":
        raise DataError(f"--augment changes every epoch's training samples, so it needs --loader stream "
                        f"(not {loader}): the frames in memory or in the cache are binned once")
    return loader


def bin_sample(events: np.ndarray, stream: StreamInfo) -> np.ndarray:
    """uint8 frames ``(T, C, H, W)`` of one sample (counts above 255 per pixel and step saturate)."""
    f = bin_events(events, stream.sensor, stream.bin_spec, stream.num_steps)
    np.minimum(f, 255, out=f)
    return f.astype(np.uint8)


class _Binned(Dataset):
    """``samples[i]`` binned (and augmented with ``epoch``): item ``(epoch, i)`` -> ``(uint8 (T, C, H, W), label)``."""

    def __init__(self, samples: Samples, stream: StreamInfo, augment: Augmenter | None = None) -> None:
        self.samples, self.stream, self.augment = samples, stream, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = item
        ev = self.samples.events(i)
        if self.augment is not None:
            ev = self.augment(ev, epoch, i)
        return torch.from_numpy(bin_sample(ev, self.stream)), int(self.samples.labels[i])


class _Cached(Dataset):
    def __init__(self, cache: FrameCache) -> None:
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        _, i = item
        return torch.from_numpy(self.cache.read(i).copy()), int(self.cache.labels[i])


class _Batches:
    """The batch sampler of a persistent DataLoader: the batches of the pass about to start, each a
    list of ``(epoch, sample)`` (set in the main process before every pass; the workers stay up)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.stack([f for f, _ in items])  # (B, T, C, H, W) uint8
    return frames, torch.tensor([y for _, y in items], dtype=torch.long)


class FrameData:
    """One split for the trainer, loaded in batches by a DataLoader (see the module docstring).

    samples: the split. stream: how events become frames. mode: "stream" or "cache".
    workers: DataLoader worker processes. augment: training split only (mode "stream").
    progress(done, total): while the frame cache is written.
    """

    def __init__(self, samples: Samples, stream: StreamInfo, *, mode: str = "cache", workers: int = 0,
                 augment: Augmenter | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        if mode not in MODES:
            raise DataError(f"loader {mode!r} is unknown; use one of {', '.join(MODES)}")
        if augment is not None:
            choose_loader(mode, generated=False, augment=True)
        self.samples, self.stream, self.mode, self.workers = samples, stream, mode, int(workers)
        self.labels = torch.as_tensor(samples.labels, dtype=torch.long)
        self.frame_shape = tuple(stream.sensor.frame_shape)
        self.cache: FrameCache | None = None
        self._dataset: Dataset
        if mode == "cache":
            self.cache = self._cache(progress)
            self._dataset = _Cached(self.cache)
        else:
            self._dataset = _Binned(samples, stream, augment)
        self._order = _Batches()
        # one loader for every pass: its workers start once and stay up (persistent_workers)
        self._loader = DataLoader(self._dataset, batch_sampler=self._order, num_workers=self.workers,
                                  collate_fn=_collate, persistent_workers=self.workers > 0)

    def cache_key(self) -> dict[str, Any]:
        """What the binned frames depend on (the frame cache's key)."""
        s = self.stream
        return {"samples": self.samples.fingerprint(), "sensor": list(self.samples.sensor_size), "dt_us": s.dt_us,
                "num_steps": s.num_steps, "bin_mode": s.bin_mode}

    def _cache(self, progress: Callable[[int, int], None] | None) -> FrameCache:
        folder = frames_folder(self.samples.name, self.cache_key())
        found = open_frame_cache(folder)
        if found is not None and len(found.labels) == len(self.samples):
            return found
        n = len(self.samples)
        binned = DataLoader(_Binned(self.samples, self.stream), batch_size=None, num_workers=self.workers,
                            sampler=[(0, i) for i in range(n)])

        def frames() -> Iterator[np.ndarray]:
            for k, (f, _) in enumerate(binned):
                if progress is not None:
                    progress(k + 1, n)
                yield f.numpy()

        shape = (self.stream.num_steps, *self.frame_shape)
        return write_frame_cache(folder, frames(), self.samples.labels, shape,
                                 {"name": self.samples.name, "key": self.cache_key(), "samples": n})

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, order: torch.Tensor | None = None, device: torch.device | str = "cpu",
                epoch: int = 0, shard: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``batch_size`` samples in ``order`` (default: all, in order): frames ``(T, B, C, H, W)``
        float32 and labels ``(B,)`` on ``device``; ``epoch`` seeds the augmentation. ``shard``: maps each
        batch's indices to the ones this process loads (a data-parallel rank's share)."""
        from ..data import batch_indices  # deferred like the package's other uses: data imports datasets

        self._order.batches = [[(int(epoch), i) for i in index.tolist()]
                               for index in batch_indices(len(self), batch_size, order, shard)]
        for frames, labels in self._loader:
            yield (frames.to(device=device, dtype=torch.float32, non_blocking=True).transpose(0, 1).contiguous(),
                   labels.to(device))
