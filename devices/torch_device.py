"""The reference device: the trained PyTorch model itself, stepped in eval mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stdl_edge.artifact import load_model
from stdl_edge.models import SpikingNet
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats


class TorchDevice(Device):
    """Runs a run folder's model (``model.json`` + ``model.safetensors``) with torch."""

    name = "torch"

    def __init__(self, model: SpikingNet, stream, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.stream = stream
        self.device = torch.device(device)
        self.num_classes = model.num_classes
        self.input_shape = tuple(model.input_shape)
        self._states: list[Any] | None = None
        self._batch = 0
        self._spikes = np.zeros(len(model.layers), dtype=np.int64)
        self._steps = 0

    @classmethod
    def load(cls, artifact: Path, device: str = "cpu", **_: Any) -> TorchDevice:
        folder = artifact if artifact.is_dir() else artifact.parent
        model, stream = load_model(folder, map_location=device)
        return cls(model, stream, device)

    def reset(self, batch: int) -> None:
        self._batch = batch
        self._states = self.model.init_state(batch, self.device)
        self._spikes[:] = 0
        self._steps = 0

    @torch.no_grad()
    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._states is None:
            raise RuntimeError("torch device: call reset(batch) before step()")
        x = torch.from_numpy(self.check_frame(frame, self._batch)).to(self.device)
        outputs: list[torch.Tensor] = []
        y, self._states = self.model.step(x, self._states, record=outputs)
        for i, (layer, out) in enumerate(zip(self.model.layers, outputs)):
            if layer.stateful and layer.kind != "readout":
                self._spikes[i] += int(out.sum().item())
        self._steps += 1
        return y.float().cpu().numpy()

    def stats(self) -> LayerStats:
        return LayerStats(names=self.model.layer_names(), spikes=self._spikes.copy(),
                          steps=self._steps, batch=self._batch)


DEVICES.register("torch", TorchDevice.load, "the trained PyTorch model (reference)")
