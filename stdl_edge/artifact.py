"""What every trained model and export carries: the model config plus the stream it expects.

A run folder holds ``model.safetensors`` (weights) and ``model.json`` (this record).
Exporters copy :class:`StreamInfo` into their artifacts (ONNX ``metadata_props``,
netx HDF5 attributes) so a device can bin a raw event stream exactly as training did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .events import BinSpec, SensorSize
from .io import FORMAT_VERSION, load_tensors, read_json, save_tensors, write_json
from .models import ModelConfig, SpikingNet, build_model

MODEL_WEIGHTS = "model.safetensors"
MODEL_RECORD = "model.json"


@dataclass(frozen=True)
class StreamInfo:
    """How the model sees events.

    sensor_size: (width, height, polarities) of the event sensor the model was trained on.
    dt_us: time step in microseconds; None where the artifact does not record one (a netx
        file written by lava-dl or by hand): binning events then needs it supplied.
    num_steps: steps per sample in training (a device may run any number).
    bin_mode: 'binary' or 'count' (see stdl_edge.events).
    class_names: label of each readout unit.

    Two encodings, each converted here only: :meth:`to_dict` (JSON: ``model.json``, the ONNX
    manifest) and :meth:`to_attrs` (a flat map of int / str values: netx HDF5 root attributes
    and ONNX ``metadata_props``).

    >>> s = StreamInfo((16, 16, 2), 1000, 8, class_names=("a", "b"))
    >>> s.to_attrs()
    {'sensor_size': '[16, 16, 2]', 'dt_us': 1000, 'num_steps': 8, 'bin_mode': 'binary', 'class_names': '["a", "b"]'}
    >>> StreamInfo.from_attrs({k: str(v) for k, v in s.to_attrs().items()}) == s   # ONNX: all strings
    True
    """

    sensor_size: tuple[int, int, int]
    dt_us: int | None
    num_steps: int
    bin_mode: str = "binary"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        BinSpec(1 if self.dt_us is None else self.dt_us, self.bin_mode)  # validates dt and mode
        object.__setattr__(self, "num_steps", int(self.num_steps))
        if self.dt_us is not None:
            object.__setattr__(self, "dt_us", int(self.dt_us))

    @property
    def sensor(self) -> SensorSize:
        return SensorSize(*self.sensor_size)

    @property
    def bin_spec(self) -> BinSpec:
        """Events -> frames at ``dt_us``; a ``ValueError`` when no time step is recorded."""
        if self.dt_us is None:
            raise ValueError("the artifact records no time step (dt_us), so events cannot be binned; "
                             "supply one (dt_us=... when opening the device)")
        return BinSpec(dt_us=self.dt_us, mode=self.bin_mode)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensor_size"] = list(self.sensor_size)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        return cls(**d)

    def to_attrs(self) -> dict[str, int | str]:
        """A flat ``key -> int | str`` map (lists as JSON strings); ``dt_us`` left out when None."""
        attrs: dict[str, int | str] = {"sensor_size": json.dumps(list(self.sensor_size))}
        if self.dt_us is not None:
            attrs["dt_us"] = self.dt_us
        attrs.update(num_steps=self.num_steps, bin_mode=self.bin_mode, class_names=json.dumps(list(self.class_names)))
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], sensor_size: tuple[int, int, int] | None = None) -> StreamInfo:
        """Parse :meth:`to_attrs` output as HDF5 (numpy scalars) or ONNX (strings) gives it back.

        Also reads the legacy encodings of files written before :meth:`to_attrs`: netx HDF5
        with ``sensor_size`` an int array and ``class_names`` an array of bytes (empty: dtype
        ``S1``); ONNX's were the same strings as now. ``sensor_size``: used when ``attrs``
        has none (a foreign file); without either, a ``ValueError``. Missing ``dt_us`` is None.
        """
        sensor = attrs.get("sensor_size", sensor_size)
        if sensor is None:
            raise ValueError(f"no stream recorded (no 'sensor_size' among {sorted(attrs)})")
        dt = attrs.get("dt_us")
        return cls(sensor_size=tuple(int(v) for v in _listed(sensor)), dt_us=None if dt is None else int(dt),
                   num_steps=int(attrs.get("num_steps", 1)), bin_mode=_text(attrs.get("bin_mode", "binary")),
                   class_names=tuple(_text(c) for c in _listed(attrs.get("class_names", ()))))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _listed(value: Any) -> list[Any]:
    """A list attribute: a JSON string (current) or an array / sequence (legacy HDF5)."""
    if isinstance(value, (str, bytes)):
        return list(json.loads(value))
    return list(np.asarray(value).reshape(-1))


def save_model(folder: str | Path, model: SpikingNet, stream: StreamInfo,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``folder`` (atomic writes)."""
    folder = Path(folder)
    save_tensors(folder / MODEL_WEIGHTS, model.state_dict())
    write_json(folder / MODEL_RECORD, {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "stream": stream.to_dict(),
        **(extra or {}),
    })
    return folder


def load_model(folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[SpikingNet, StreamInfo]:
    """Load a model saved by :func:`save_model` (no unpickling), in eval mode."""
    folder = Path(folder)
    if not (folder / MODEL_RECORD).exists():
        raise FileNotFoundError(f"{folder} has no {MODEL_RECORD}: it is not a stdl-edge run folder "
                                "(train one with `stdl-edge train`)")
    record = read_json(folder / MODEL_RECORD)
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{folder / MODEL_RECORD} has format_version {version}; this stdl-edge reads "
                         f"{FORMAT_VERSION}")
    model = build_model(ModelConfig.from_dict(record["model"]))
    state = load_tensors(folder / MODEL_WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder / MODEL_WEIGHTS} does not fit the model in {MODEL_RECORD}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.to(map_location).eval()
    return model, StreamInfo.from_dict(record["stream"])
