"""The reference device: the trained PyTorch model itself, stepped in eval mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stdl_edge.artifact import RUN_FORMAT, RunFolder
from stdl_edge.layers import ResidualState
from stdl_edge.models import SpikingNet
from stdl_edge.neuron import CubaState
from stdl_edge.registry import DEVICES
from stdl_edge.stdl.engine import run_chunk

from .base import Device, LayerStats, chunk_steps
from .threads import check_threads, torch_threads


class TorchDevice(Device):
    """Runs a run folder's model (``model.json`` + ``model.safetensors``) with torch.

    threads: torch's intra-op threads during each ``step`` (set around the step and restored
    after it, about 5 us, so the caller's process keeps its own setting). Default 1: a batch-1
    stream steps small tensors, where more threads only oversubscribe the cores (p90 step
    latency 100x the p50 on a busy machine). ``None``: the process's setting.
    """

    name = "torch"

    def __init__(self, model: SpikingNet, stream, device: str = "cpu", record: bool = False,
                 threads: int | None = 1) -> None:
        self.threads = check_threads(threads)
        self.model = model.to(device).eval()
        self.record = record
        self._recorded: dict[str, np.ndarray] = {}
        self.stream = stream
        self.device = torch.device(device)
        self.num_classes = model.num_classes
        self.input_shape = tuple(model.input_shape)
        self._states: list[Any] | None = None
        self._batch = 0
        self._spikes = np.zeros(len(model.layers), dtype=np.int64)
        self._steps = 0

    @classmethod
    def load(cls, artifact: Path, device: str = "cpu", record: bool = False, threads: int | None = 1,
             **_: Any) -> TorchDevice:
        folder = artifact if artifact.is_dir() else artifact.parent
        run = RunFolder(folder).load(map_location=device)
        return cls(run.model, run.stream, device, record=record, threads=threads)

    def reset(self, batch: int) -> None:
        self._batch = batch
        self._states = self.model.init_state(batch, self.device)
        self._spikes[:] = 0
        self._steps = 0

    @torch.inference_mode()  # no autograd bookkeeping at all: 13 % less time per batch-1 step than no_grad
    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._states is None:
            raise RuntimeError("torch device: call reset(batch) before step()")
        x = torch.from_numpy(self.check_frame(frame, self._batch)).to(self.device)
        outputs: list[torch.Tensor] = []
        with torch_threads(self.threads):
            y, self._states = self.model.step(x, self._states, record=outputs)
        for i, (layer, out) in enumerate(zip(self.model.layers, outputs)):
            if layer.spiking:
                self._spikes[i] += int(out.sum().item())
        if self.record:
            self._recorded = _record(self.model, outputs, self._states)
        self._steps += 1
        return y.float().cpu().numpy()

    @torch.inference_mode()
    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """Readouts ``(T, B, classes)`` of ``frames (T, B, C, H, W)`` from a reset state
        (:meth:`Device.run_frames`), layer by layer over chunks of steps (:func:`chunk_steps`): each
        convolution and dense synapse runs once per chunk with time folded into the batch
        (:func:`stdl_edge.stdl.engine.run_chunk`, what training runs), the neurons step in
        sequence. Same maths as stepping; float sums may differ in the last bit (another batch
        size can pick another kernel). With ``record=True`` it steps (``recorded()`` is per step)."""
        if self.record:
            return super().run_frames(frames)
        frames = self.start_frames(frames)
        steps, batch = frames.shape[:2]
        if not steps:
            return np.zeros((0, batch, self.num_classes), np.float32)
        x_all = torch.from_numpy(frames).to(self.device)
        outputs = []
        with torch_threads(self.threads):
            size = chunk_steps(batch, max(int(np.prod(layer.out_shape)) for layer in self.model.layers))
            for t0 in range(0, steps, size):
                x = x_all[t0:t0 + size]
                for j, layer in enumerate(self.model.layers):
                    x, (self._states[j],) = run_chunk(self.model, j, j + 1, x, [self._states[j]], None, False)
                    if layer.spiking:
                        self._spikes[j] += int(x.sum().item())
                outputs.append(x)
        self._steps += steps
        return torch.cat(outputs).float().cpu().numpy()

    def recorded(self) -> dict[str, np.ndarray]:
        return dict(self._recorded)

    def stats(self) -> LayerStats:
        return LayerStats(names=self.model.layer_names(), spikes=self._spikes.copy(),
                          steps=self._steps, batch=self._batch)


def _record(model: SpikingNet, outputs: list[torch.Tensor], states: list[Any]) -> dict[str, np.ndarray]:
    """Per-layer outputs and states of one step, keyed as in :meth:`Device.recorded`.

    ``<layer>``: the layer's output; ``<layer>/u``, ``<layer>/v``: its current and voltage;
    a residual block also gives ``<layer>/inner`` (spikes), ``<layer>/inner/u``, ``<layer>/inner/v``.
    """
    rec: dict[str, np.ndarray] = {}
    for name, out, state in zip(model.layer_names(), outputs, states):
        rec[name] = out.detach().float().cpu().numpy()
        if isinstance(state, ResidualState):
            rec[f"{name}/inner"] = state.inner.spike.float().cpu().numpy()
            rec[f"{name}/inner/u"] = state.inner.current.float().cpu().numpy()
            rec[f"{name}/inner/v"] = state.inner.voltage.float().cpu().numpy()
            state = state.out
        if isinstance(state, CubaState):
            rec[f"{name}/u"] = state.current.float().cpu().numpy()
            rec[f"{name}/v"] = state.voltage.float().cpu().numpy()
    return rec


DEVICES.register("torch", TorchDevice.load, "the trained PyTorch model (reference)", format=RUN_FORMAT)
