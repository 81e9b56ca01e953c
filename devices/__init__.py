"""Devices that run exported networks; each registers itself in ``stdl_edge.registry.DEVICES``."""

from __future__ import annotations

from . import torch_device  # noqa: F401  (registers "torch")
from . import onnxruntime_device  # noqa: F401  (registers "onnxruntime")
from . import loihi_sim  # noqa: F401  (registers "loihi-sim")
from . import lava_device  # noqa: F401  (registers "lava"; Lava itself is imported on open)
from .base import Device, LayerStats, classify, open_device, stream_windows
from .plots import write_plots
from .streaming import EnergyModel, RunResult, run_events

__all__ = ["Device", "EnergyModel", "LayerStats", "RunResult", "classify", "open_device", "run_events",
           "stream_windows", "write_plots"]
