"""Devices that run exported networks; each registers itself in ``stdl_edge.registry.DEVICES``."""

from __future__ import annotations

from . import torch_device  # noqa: F401  (registers "torch")
from . import onnxruntime_device  # noqa: F401  (registers "onnxruntime")
from . import loihi_sim  # noqa: F401  (registers "loihi-sim")
from . import lava_device  # noqa: F401  (registers "lava"; Lava itself is imported on open)
from .base import Device, LayerStats, classify, open_device, stream_windows

__all__ = ["Device", "LayerStats", "classify", "open_device", "stream_windows"]
