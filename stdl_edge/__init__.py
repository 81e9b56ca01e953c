"""stdl-edge: train SNNs with spatio-temporal decoupled learning, deploy them to the edge.

The Python API (``docs/api.md``): :func:`train`, :func:`load_run`, :func:`export`,
:func:`check_target`, :func:`import_nir`, :func:`open_device`, :func:`run_events`,
:func:`verify` (all in :mod:`stdl_edge.api`), and
the building blocks below. Every name is imported on first use, so ``import stdl_edge``
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it (imported on first access)
_EXPORTS = {
    **dict.fromkeys(("check_target", "export", "import_nir", "load_run", "open_device", "run_events", "train",
                     "verify"), "api"),
    **dict.fromkeys(("EVENT_DTYPE", "EventError", "SensorSize", "as_events", "validate_events"), "events"),
    **dict.fromkeys(("BinSpec", "EventBinner", "bin_events", "bin_windows"), "binning"),
    **dict.fromkeys(("ModelConfig", "SpikingNet", "build_model"), "models"),
    **dict.fromkeys(("CubaParams", "CubaState", "cuba_step"), "neuron"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = ["__version__", *_EXPORTS]
