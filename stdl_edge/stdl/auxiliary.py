"""Auxiliary networks (AugLocal rule) and the training plan of a partitioned model.

Subnetwork ``k < K`` ending before layer ``e`` gets a head made of:

1. freshly initialised copies (same class and hyper-parameters, new weights drawn as the
   primary network's, :func:`~stdl_edge.models.spiking_init`) of ``d`` of
   the ``D`` spiking layers that follow it in the primary model, AugLocal's uniform rule:
   the layers at offsets ``round(D / d * i)``, ``i = 1..d`` (offset 1 is the next layer), so
   the deepest following layer is always one of them (``d = D`` copies them all, ``d = 1``
   the deepest); strides are kept, so spatial sizes follow the primary network, and a
   pooling layer that follows a chosen layer in the primary model is copied with it;
2. ``Flatten`` where the tensor is still spatial, after average pooling by the smallest
   kernel that leaves at most :data:`MAX_READOUT_FEATURES` values (up to global pooling);
3. a fresh :class:`~stdl_edge.layers.Readout`.

Decision (deviation from AugLocal's global average pooling), re-measured in issue 10 with
d = 0 heads (``local``, window 2, seed 0, 6 epochs): global average pooling gave exits of
10 / 12 / 45 % on digits-dvs (flatten: 94 / 94 / 93 %) and a full model 5-20 points worse.
Pooled over all positions an early map's channel means hardly vary between samples (std 0.012
vs 0.10 per position), and what they discard, *where* the features are, is what tells digits
and motion directions apart; rescaling (sum pooling) lifted the exits only to 16 / 27 / 60 %.
Pooling remains where a map is too large for a direct readout (docs/stdl.md).

A copied *spiking dense* layer is preceded by a plain ``Flatten`` instead of pooling:
it must see binary spikes at its design fan-in. Behind global pooling its inputs are
firing rates (~0.1), it never reaches threshold, and the triangle surrogate (zero beyond
one threshold width) then passes no gradient at all: the head would be dead. Pooling is
used only before the (non-spiking, linear) readout, where rates are what it should read.

``d`` is the **largest** depth whose per-step memory together with subnetwork ``k`` fits the
budget: saved tensors + carried neuron state of one decoupled step
(:attr:`~stdl_edge.stdl.partition.StepCost.step_bytes`, measured exactly by
:func:`~stdl_edge.stdl.partition.measure_step`), the memory that scales with the batch and
that STDL bounds; parameters (with their gradients and Adam moments) are a fixed cost,
reported in the plan but not budgeted. The default budget is :data:`DEFAULT_BUDGET_FACTOR` x
the largest subnetwork's own step memory. Why not the training bytes (activations + 4 x
parameters) as before: AugLocal's rule always copies the deepest following layer, in dvs-cnn
the dense one, and its copy reads the early map flattened (fan-in 4624 after conv0 at 34x34
instead of 1600): 9 MiB of weights, gradients and Adam moments, more than every subnetwork.
Counted that way the d = 1 head was dearer than d = D (whose copied strided convs shrink the
map first), so the rule could only pick d = 0 (at 1x) or d = D (at 2x). Per step the dense
copy costs almost nothing (3.19 against 3.11 MiB for d = 0, 5.75 for d = D, head 0 at batch 32),
and the budget now picks d = 1, 2, 1 for dvs-cnn's heads (docs/stdl.md has the measurements).
``d = 0`` is the plain pooled-linear
head (pool as needed + readout) of the ``local`` baseline. Each head is a :class:`~stdl_edge.models.SpikingNet`
whose input shape is subnetwork ``k``'s output shape, so exporters treat it like a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..layers import AvgPool2d, Flatten, Layer, Readout
from ..layerspec import copy_layer, net_from_layers
from ..models import SpikingNet, spiking_init
from .memory import MIB
from .partition import Boundaries, StepCost, measure_step, partition

METHODS = ("stdl", "bptt", "sltt", "local")

#: default budget of subnetwork + head, in units of the largest subnetwork's own training memory
DEFAULT_BUDGET_FACTOR = 2


def candidate_layers(model: SpikingNet, stop: int) -> list[int]:
    """Indices of the spiking (non-readout) layers after ``stop``: what a head may copy."""
    return [i for i in range(stop, len(model.layers))
            if model.layers[i].spiking]


def sample_uniform(num: int, depth: int) -> list[int]:
    """AugLocal's offsets ``round(num / depth * i)``, ``i = 1..depth``, as 0-based indices into
    ``range(num)``: ``depth`` of the ``num`` following layers, the last one always included.
    ``round`` is Python's (halves to even); offsets are distinct since ``num / depth >= 1``."""
    if not 0 <= depth <= num:
        raise ValueError(f"aux depth {depth} is outside 0..{num}")
    return [int(round(num / depth * i)) - 1 for i in range(1, depth + 1)]


#: largest flattened map a head's readout reads directly (8192 x classes weights); larger
#: maps are average-pooled by the smallest kernel that brings them under it
MAX_READOUT_FEATURES = 8192


def _reduce(shape: tuple[int, ...], max_features: int = MAX_READOUT_FEATURES) -> list[Layer]:
    """Pooling (only as much as needed, up to global) + flatten of a spatial tensor; nothing for a flat one."""
    if len(shape) != 3:
        return []
    c, h, w = shape
    kernels = [k for k in range(1, math.gcd(h, w) + 1) if h % k == 0 and w % k == 0]
    k = next((k for k in kernels if c * (h // k) * (w // k) <= max_features), kernels[-1])
    layers: list[Layer] = [AvgPool2d(shape, k)] if k > 1 else []
    layers.append(Flatten(layers[-1].out_shape if layers else shape))
    return layers


def build_aux_head(model: SpikingNet, stop: int, depth: int) -> SpikingNet:
    """Fresh auxiliary head for the subnetwork that ends before layer ``stop`` (uses the torch RNG)."""
    return _build_head(model, stop, depth)[0]


def _build_head(model: SpikingNet, stop: int, depth: int) -> tuple[SpikingNet, list[int]]:
    """The head and the primary-model indices of the layers it copies."""
    candidates = candidate_layers(model, stop)
    chosen = [candidates[j] for j in sample_uniform(len(candidates), depth)]
    shape = tuple(model.layers[stop - 1].out_shape)
    layers: list[Layer] = []
    copied: list[int] = []
    for idx in chosen:
        src = model.layers[idx]
        flat_input = len(src.in_shape) == 1
        if flat_input and len(shape) == 3:
            # flatten, not pool: a spiking dense layer needs binary spikes at the fan-in it was
            # made for; pooled rates (~0.1) leave it silent, and a silent layer gets no gradient
            layers.append(Flatten(shape))
            shape = tuple(layers[-1].out_shape)
        elif len(shape) != 3:
            continue  # a conv cannot follow a flat tensor; a deeper dense copy still can
        layers.append(copy_layer(src, shape))
        copied.append(idx)
        shape = tuple(layers[-1].out_shape)
        j = idx + 1  # pooling that follows the source layer comes along
        while j < len(model.layers) and model.layers[j].kind == "avgpool" and len(shape) == 3:
            k = model.layers[j].kernel_size
            if shape[1] % k == 0 and shape[2] % k == 0 and shape[1] > 1:
                layers.append(AvgPool2d(shape, k))
                shape = tuple(layers[-1].out_shape)
            j += 1
    layers += _reduce(shape)
    shape = tuple(layers[-1].out_shape) if layers else shape
    layers.append(Readout(shape[0], model.num_classes))
    # the primary network's initialisation: torch's default leaves copies two deep silent
    return net_from_layers(spiking_init(layers, model.config), model), copied


@dataclass(frozen=True)
class SubnetPlan:
    """One subnetwork and its head. Bytes are for one decoupled step at the plan's batch size.

    start, stop: layer range in the primary model.
    aux_source: primary-model indices of the layers copied into the head ([] = pooled linear head).
    aux_candidates: how many spiking layers follow (the largest possible depth).
    subnet: cost of the subnetwork alone; total: subnetwork + head (its ``step_bytes`` must fit the budget).
    rejected: ``(depth, step bytes)`` of each deeper head tried that did not fit (deepest first).
    """

    index: int
    start: int
    stop: int
    layers: list[str]
    aux_layers: list[str]
    aux_source: list[int]
    aux_candidates: int
    subnet: StepCost
    total: StepCost
    fits: bool
    rejected: list[tuple[int, int]] = field(default_factory=list)

    @property
    def aux_depth(self) -> int:
        return len(self.aux_source)

    def why(self) -> str:
        """One line: the depth chosen, the AugLocal offsets it gives, and what a deeper head needed."""
        if not self.aux_candidates:
            return "last subnetwork: the model's readout"
        d, D = self.aux_depth, self.aux_candidates
        text = f"d={d} of D={D}"
        if d:
            offsets = ",".join(str(int(round(D / d * i))) for i in range(1, d + 1))
            text += f": offsets round({D}/{d}*i) = {offsets}"
        if self.rejected:
            depth, nbytes = self.rejected[-1]
            text += f"; d={depth} needs {nbytes / MIB:.2f} MiB > budget"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rejected"] = [list(r) for r in self.rejected]
        d["why"] = self.why()
        for key in ("subnet", "total"):
            cost = getattr(self, key)
            d[key].update(training_bytes=cost.training_bytes, step_bytes=cost.step_bytes)
        return d


@dataclass
class Plan:
    """How a model is trained: method, subnetwork ranges, heads and the memory budget."""

    method: str
    boundaries: Boundaries
    batch: int
    budget_bytes: int
    subnets: list[SubnetPlan] = field(default_factory=list)
    heads: list[SpikingNet] = field(default_factory=list, repr=False)

    @property
    def temporal(self) -> bool:
        """Whether time steps are decoupled (every method except ``bptt``)."""
        return self.method != "bptt"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "boundaries": [list(b) for b in self.boundaries], "batch": self.batch,
                "budget_bytes": self.budget_bytes, "budget_mb": self.budget_bytes / MIB,
                "subnets": [s.to_dict() for s in self.subnets]}


def _layer_names(net: SpikingNet, start: int = 0, stop: int | None = None) -> list[str]:
    return net.layer_names()[start:stop]


def make_plan(model: SpikingNet, method: str = "stdl", subnets: int = 4, splits: list[int] | None = None,
              budget_mb: float | None = None, batch: int = 32, seed: int = 0,
              device: torch.device | str = "cpu") -> Plan:
    """Partition ``model`` and build its heads for ``method`` (see the module docstring).

    ``bptt`` and ``sltt`` use one subnetwork and no heads; ``local`` uses depth-0 heads;
    ``stdl`` the largest depth that fits ``budget_mb`` (MiB; default:
    :data:`DEFAULT_BUDGET_FACTOR` x the largest subnetwork's own footprint). Heads are initialised from ``seed`` (the global torch
    RNG is left untouched).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    if budget_mb is not None and not budget_mb > 0:
        raise ValueError(f"--budget-mb {budget_mb} must be > 0 (MiB)")
    if method in ("bptt", "sltt"):
        if (splits and len(splits) > 0) or subnets not in (1, None):
            raise ValueError(f"method {method!r} trains the model as one network; drop --subnets/--splits "
                             "(or use --method stdl/local)")
        boundaries = [(0, len(model.layers))]
    else:
        boundaries = partition(model, subnets, splits, batch, device)
    alone = [measure_step(model, a, b, batch, device=device) for a, b in boundaries]
    budget = (int(budget_mb * MIB) if budget_mb is not None
              else DEFAULT_BUDGET_FACTOR * max(c.step_bytes for c in alone))
    plan = Plan(method, boundaries, batch, budget)
    for k, (a, b) in enumerate(boundaries):
        last = k == len(boundaries) - 1
        candidates = candidate_layers(model, b)
        head: SpikingNet | None = None
        source: list[int] = []
        total = alone[k]
        rejected: list[tuple[int, int]] = []
        if not last:
            depths = range(len(candidates), -1, -1) if method == "stdl" else [0]
            for depth in depths:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed * 1009 + 7919 * (k + 1) + depth)
                    head, source = _build_head(model, b, depth)
                total = measure_step(model, a, b, batch, head=head, device=device)
                if total.step_bytes <= budget:
                    break
                rejected.append((depth, total.step_bytes))
            plan.heads.append(head)
        aux_names = _layer_names(head) if head is not None else []
        plan.subnets.append(SubnetPlan(k, a, b, _layer_names(model, a, b), aux_names, source,
                                       0 if last else len(candidates), alone[k], total,
                                       total.step_bytes <= budget, rejected))
    return plan

