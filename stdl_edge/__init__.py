"""stdl-edge: train SNNs with spatio-temporal decoupled learning, deploy them to the edge."""

from __future__ import annotations

__version__ = "0.1.0"

from .events import EVENT_DTYPE, BinSpec, EventBinner, EventError, SensorSize, bin_events, validate_events
from .models import ModelConfig, SpikingNet, build_model
from .neuron import CubaParams, CubaState, cuba_step

__all__ = [
    "__version__", "EVENT_DTYPE", "BinSpec", "EventBinner", "EventError", "SensorSize", "bin_events",
    "validate_events", "ModelConfig", "SpikingNet", "build_model", "CubaParams", "CubaState", "cuba_step",
]
