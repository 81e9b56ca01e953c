"""A trained run folder: primary model, stream, subnetwork boundaries and auxiliary heads.

Layout (docs/architecture.md)::

    runs/NAME/model.json          artifact record; its "stdl" key holds method, K, boundaries,
                                  aux head specs, class names, plan, training config, results
    runs/NAME/model.safetensors   primary model weights
    runs/NAME/aux.safetensors     auxiliary heads: key "<k>.<param name>" for the head after subnet k

:func:`load_run` is what exporters and devices use; nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..artifact import MODEL_RECORD, StreamInfo, load_model, save_model
from ..io import load_tensors, read_json, save_tensors
from ..models import SpikingNet
from .auxiliary import head_from_spec, head_spec

AUX_WEIGHTS = "aux.safetensors"


@dataclass
class TrainedRun:
    """What :func:`load_run` returns.

    model: the primary network (eval mode).
    stream: how events become frames (sensor, dt, T, bin mode, class names).
    boundaries: layer ranges ``(start, stop)`` of the K subnetworks, in order.
    aux_heads: K - 1 heads; ``aux_heads[k]`` reads subnetwork k's output (early exit k).
    record: the whole ``model.json`` (``record["stdl"]`` has the training details).
    """

    model: SpikingNet
    stream: StreamInfo
    boundaries: list[tuple[int, int]]
    aux_heads: list[SpikingNet] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.record.get("stdl", {}).get("method", "unknown"))

    @property
    def num_subnets(self) -> int:
        return len(self.boundaries)


def save_run(folder: str | Path, model: SpikingNet, stream: StreamInfo, boundaries: list[tuple[int, int]],
             heads: list[SpikingNet], stdl: dict[str, Any]) -> Path:
    """Write model.json / model.safetensors / aux.safetensors (atomic writes).

    ``stdl`` is merged into the record's "stdl" key with method-independent entries
    (subnets, boundaries, aux head specs, class names) filled in here.
    """
    folder = Path(folder)
    if len(heads) != len(boundaries) - 1:
        raise ValueError(f"{len(boundaries)} subnetworks need {len(boundaries) - 1} auxiliary heads, "
                         f"got {len(heads)}")
    tensors = {f"{k}.{name}": t for k, head in enumerate(heads) for name, t in head.state_dict().items()}
    save_tensors(folder / AUX_WEIGHTS, tensors, metadata={"heads": str(len(heads))})
    record = {**stdl, "subnets": len(boundaries), "boundaries": [list(b) for b in boundaries],
              "aux_heads": [head_spec(h) for h in heads], "class_names": list(stream.class_names)}
    save_model(folder, model, stream, extra={"stdl": record})
    return folder


def load_run(folder: str | Path, map_location: str | torch.device = "cpu") -> TrainedRun:
    """Load a run written by ``stdl-edge train`` (model, stream, boundaries, aux heads), in eval mode."""
    folder = Path(folder)
    model, stream = load_model(folder, map_location)
    record = read_json(folder / MODEL_RECORD)
    stdl = record.get("stdl")
    if stdl is None:
        # a bare artifact (save_model without training details): one subnetwork, no heads
        return TrainedRun(model, stream, [(0, len(model.layers))], [], record)
    boundaries = [(int(a), int(b)) for a, b in stdl["boundaries"]]
    specs = stdl.get("aux_heads", [])
    heads = [head_from_spec(spec, model) for spec in specs]
    if heads:
        weights = load_tensors(folder / AUX_WEIGHTS)
        for k, head in enumerate(heads):
            prefix = f"{k}."
            state = {name[len(prefix):]: t for name, t in weights.items() if name.startswith(prefix)}
            missing, unexpected = head.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"{folder / AUX_WEIGHTS} does not fit auxiliary head {k} in {MODEL_RECORD}: "
                                 f"missing {missing[:3]}, unexpected {unexpected[:3]}")
            head.to(map_location).eval()
    if len(heads) != len(boundaries) - 1:
        raise ValueError(f"{folder / MODEL_RECORD} lists {len(boundaries)} subnetworks but {len(heads)} "
                         "auxiliary heads; the record is corrupt")
    return TrainedRun(model, stream, boundaries, heads, record)
