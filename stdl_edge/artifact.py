"""What every trained model and export carries: the model config plus the stream it expects.

A run folder holds ``model.safetensors`` (weights) and ``model.json`` (this record).
Exporters copy :class:`StreamInfo` into their artifacts (ONNX ``metadata_props``,
netx HDF5 attributes) so a device can bin a raw event stream exactly as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    dt_us: time step in microseconds.
    num_steps: steps per sample in training (a device may run any number).
    bin_mode: 'binary' or 'count' (see stdl_edge.events).
    class_names: label of each readout unit.
    """

    sensor_size: tuple[int, int, int]
    dt_us: int
    num_steps: int
    bin_mode: str = "binary"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        BinSpec(self.dt_us, self.bin_mode)  # validates dt and mode

    @property
    def sensor(self) -> SensorSize:
        return SensorSize(*self.sensor_size)

    @property
    def bin_spec(self) -> BinSpec:
        return BinSpec(dt_us=int(self.dt_us), mode=self.bin_mode)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensor_size"] = list(self.sensor_size)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        return cls(**d)


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
