"""Augmentation of training recordings with tonic's event transforms, chosen in the config and seeded.

In a config file::

    augment = [{name = "RandomFlipPolarity", p = 0.5}, {name = "SpatialJitter", var_x = 1, var_y = 1},
               {name = "DropEvent", p = 0.1}]

or on the command line ``--augment "RandomFlipPolarity p=0.5; SpatialJitter var_x=1 var_y=1; DropEvent p=0.1"``.
Only the event-to-event transforms in :data:`TRANSFORMS` are allowed; ``sensor_size`` is filled
in from the data set. They are applied in order to each *training* sample before binning (never
to the test split). tonic draws from numpy's global generator, so each application runs under
``np.random.seed`` of a seed derived from ``(seed, epoch, sample)`` and the previous global state
is restored: the same seed gives the same augmented samples whatever the number of workers.
Afterwards events outside the sensor or before time 0 are dropped and the rest sorted by time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..events import EVENT_DTYPE, SensorSize
from .samples import DataError

#: tonic event transforms that keep events on the same sensor
TRANSFORMS = ("Decimation", "Denoise", "DropEvent", "DropEventByArea", "DropEventByTime", "DropPixel", "EventDrop",
              "RandomFlipLR", "RandomFlipPolarity", "RandomFlipUD", "RandomTimeReversal", "RefractoryPeriod",
              "SpatialJitter", "TimeJitter", "TimeSkew", "UniformNoise")


def parse_augment(value: Any) -> tuple[dict[str, Any], ...]:
    """The augmentation list from a config value: a list of ``{"name": ..., <param>: ...}`` tables, or the
    ``"Name k=v k=v; Name ..."`` text of ``--augment``; every name and parameter checked against tonic."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        items = []
        for part in (p.strip() for p in value.split(";")):
            if not part:
                continue
            name, *pairs = part.split()
            params: dict[str, Any] = {"name": name}
            for pair in pairs:
                key, eq, text = pair.partition("=")
                if not eq or not key:
                    raise DataError(f"--augment {part!r}: {pair!r} must be key=value, e.g. DropEvent p=0.1")
                try:
                    params[key] = json.loads(text)
                except ValueError:
                    params[key] = text
            items.append(params)
        value = items
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) and "name" in v for v in value):
        raise DataError(f"augment = {value!r} must be a list of tables with a 'name', e.g. "
                        "[{name = \"DropEvent\", p = 0.1}]")
    items = tuple(dict(v) for v in value)
    for item in items:
        _check(item)
    return items


def _tonic_class(name: str) -> type:
    if name not in TRANSFORMS:
        raise DataError(f"augment: unknown transform {name!r}; use one of {', '.join(TRANSFORMS)}")
    try:
        import tonic.transforms as tt
    except ImportError:
        raise ImportError("augmentation needs tonic: pip install 'stdl-edge[datasets]'") from None
    return getattr(tt, name)


def _check(item: dict[str, Any]) -> None:
    import dataclasses

    cls = _tonic_class(str(item["name"]))
    known = {f.name for f in dataclasses.fields(cls)} - {"sensor_size"}
    unknown = sorted(set(item) - known - {"name"})
    if unknown:
        raise DataError(f"augment: {item['name']} has no parameter {', '.join(unknown)}; "
                        f"it takes {', '.join(sorted(known)) or 'none'}")


@dataclass(frozen=True)
class Augmenter:
    """The transforms of :func:`parse_augment` for one sensor; ``augmenter(events, seed, epoch, index)``."""

    items: tuple[dict[str, Any], ...]
    sensor_size: tuple[int, int, int]
    seed: int = 0

    def __post_init__(self) -> None:
        import dataclasses

        built = []
        for item in self.items:
            cls = _tonic_class(str(item["name"]))
            params = {k: v for k, v in item.items() if k != "name"}
            if "sensor_size" in {f.name for f in dataclasses.fields(cls)}:
                params["sensor_size"] = tuple(self.sensor_size)
            try:
                built.append(cls(**params))
            except (TypeError, ValueError) as e:
                raise DataError(f"augment: {item['name']}({params}) is refused by tonic: {e}") from None
        object.__setattr__(self, "_transforms", tuple(built))

    def __call__(self, events: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """``events`` (not modified) transformed with the generator of ``(seed, epoch, index)``."""
        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        try:
            ev = events.copy()
            for transform in self._transforms:
                ev = transform(ev)
        finally:
            np.random.set_state(state)
        return clean(ev, SensorSize(*self.sensor_size))

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(i) for i in self.items]


def clean(ev: np.ndarray, sensor: SensorSize) -> np.ndarray:
    """EVENT_DTYPE events inside ``sensor`` with ``t >= 0``, sorted by time (jitter moves events out and across)."""
    out = np.empty(len(ev), EVENT_DTYPE)
    for f in ("x", "y", "t", "p"):
        out[f] = np.asarray(ev[f]).round() if f != "p" else np.asarray(ev[f]).astype(bool)
    keep = (out["x"] >= 0) & (out["x"] < sensor.width) & (out["y"] >= 0) & (out["y"] < sensor.height) & (out["t"] >= 0)
    out = out[keep]
    return out[np.argsort(out["t"], kind="stable")]


def describe(items: Sequence[dict[str, Any]]) -> str:
    """``"DropEvent(p=0.1), TimeJitter(std=100)"`` for messages."""
    return ", ".join(f"{i['name']}({', '.join(f'{k}={v}' for k, v in i.items() if k != 'name')})" for i in items)
