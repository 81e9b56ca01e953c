"""STDL: spatio-temporal decoupled learning (DESIGN.md section 4).

* :mod:`.partition` cuts a model into K contiguous subnetworks (explicit or memory-balanced);
* :mod:`.auxiliary` builds the AugLocal-style auxiliary heads under a memory budget (:func:`make_plan`);
* :mod:`.memory` measures training memory exactly (saved tensors, parameters, optimizer state);
* :mod:`.trainer` is the one engine behind ``stdl``, ``bptt``, ``sltt`` and ``local``;
* :mod:`.checkpoint` writes and reads a run's ``checkpoint/`` (exact resume, no unpickling);
"""

from __future__ import annotations

from .auxiliary import METHODS, Plan, SubnetPlan, build_aux_head, make_plan
from .memory import MemoryReport, SavedTensorMeter
from .partition import balanced_boundaries, boundaries_from_splits, partition, units_of
from ..artifact import AUX_WEIGHTS, TrainedRun, load_run, save_run  # the run folder (stdl_edge.artifact)
from .trainer import TrainConfig, TrainResult, train

__all__ = [
    "METHODS", "Plan", "SubnetPlan", "build_aux_head", "make_plan", "MemoryReport", "SavedTensorMeter",
    "balanced_boundaries", "boundaries_from_splits", "partition", "units_of", "AUX_WEIGHTS", "TrainedRun",
    "load_run", "save_run", "TrainConfig", "TrainResult", "train",
]
