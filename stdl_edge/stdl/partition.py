"""Cut a :class:`~stdl_edge.models.SpikingNet` into ``K`` contiguous subnetworks.

Boundaries are layer index ranges ``[(0, b1), (b1, b2), ..., (b_{K-1}, n)]``; subnetwork
``k`` runs ``model.step(x, states, start, stop)``.

Layers are first grouped into **units**, the smallest pieces a cut may separate:

* a stateless pooling layer stays with the layer before it (conv + pool is one block,
  and the smaller pooled tensor is what crosses the boundary);
* a ``Flatten`` stays with the layer after it (it is the input adapter of a dense layer,
  so the boundary tensor keeps its spatial shape and an auxiliary head can pool it);
* the readout stays with the layer before it (a subnetwork of only a linear readout has
  no hidden layer to learn a representation with);
* a residual block is a single layer already, so it is never split.

Automatic partitioning balances the per-step training memory of the parts: each unit
is measured exactly with :class:`~stdl_edge.stdl.memory.SavedTensorMeter` (one
temporally decoupled step, forward and backward, at the training batch size) plus
``4 x`` its parameter bytes (weights, gradients, Adam's two moments), and a dynamic
programme picks the cut that minimises the largest part.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..models import SpikingNet
from .engine import carried
from .memory import SavedTensorMeter, param_bytes, state_bytes, training_state_bytes

Boundaries = list[tuple[int, int]]


def units_of(model: SpikingNet) -> list[tuple[int, int]]:
    """Layer ranges that a partition never cuts (see the module docstring)."""
    units: list[list[int]] = []
    pending: int | None = None  # start of stateless layers waiting for the next unit
    for i, layer in enumerate(model.layers):
        if layer.kind == "flatten" or (not layer.stateful and not units):
            pending = i if pending is None else pending
            continue
        if not layer.stateful:  # pooling: joins the previous unit
            if pending is None:
                units[-1][1] = i + 1
            continue
        if layer.kind == "readout" and units:
            units[-1][1] = i + 1
            pending = None
            continue
        units.append([i if pending is None else pending, i + 1])
        pending = None
    if pending is not None:
        if not units:
            raise ValueError("the model has no stateful layer; nothing to partition")
        units[-1][1] = len(model.layers)
    return [(a, b) for a, b in units]


def check_boundaries(model: SpikingNet, boundaries: Boundaries) -> Boundaries:
    """Validate contiguous, covering ranges; each part needs a spiking (non-readout) layer."""
    n = len(model.layers)
    if not boundaries or boundaries[0][0] != 0 or boundaries[-1][1] != n:
        raise ValueError(f"subnetwork ranges {boundaries} must start at layer 0 and end at layer {n}")
    for (a, b), (c, _) in zip(boundaries, boundaries[1:]):
        if b != c:
            raise ValueError(f"subnetwork ranges {boundaries} are not contiguous at layer {b}")
    names = model.layer_names()
    for k, (a, b) in enumerate(boundaries):
        if a >= b:
            raise ValueError(f"subnetwork {k} ({a}:{b}) is empty; split points must increase")
        if not any(layer.spiking for layer in model.layers[a:b]):
            raise ValueError(f"subnetwork {k} would hold only {', '.join(names[a:b])}: a subnetwork needs a "
                             "spiking layer (stateless layers and the readout stay with a neighbour); "
                             "move the split point")
    return [(int(a), int(b)) for a, b in boundaries]


def boundaries_from_splits(model: SpikingNet, splits: list[int]) -> Boundaries:
    """Explicit split points: the first layer index of subnetworks ``1..K-1``."""
    n = len(model.layers)
    splits = [int(s) for s in splits]
    if sorted(set(splits)) != splits or any(not 0 < s < n for s in splits):
        raise ValueError(f"split points {splits} must be strictly increasing layer indices in 1..{n - 1} "
                         f"(layers: {', '.join(model.layer_names())})")
    edges = [0, *splits, n]
    return check_boundaries(model, list(zip(edges, edges[1:])))


def _random_input(shape: tuple[int, ...], batch: int, device: torch.device | str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand((batch, *shape), generator=g) < 0.25).float().to(device)


@dataclass(frozen=True)
class StepCost:
    """Training memory of a piece of network for one decoupled step, in bytes.

    activation_bytes: peak saved-tensor bytes of forward + backward of one step at ``batch``.
    param_bytes: bytes of its parameters; ``training_bytes`` adds gradients and Adam moments.
    state_bytes: the neuron state it carries from step to step at ``batch`` (``step_bytes`` =
        activations + state: the memory that scales with the batch, what an aux head's budget holds).
    """

    activation_bytes: int
    param_bytes: int
    state_bytes: int = 0

    @property
    def training_bytes(self) -> int:
        return self.activation_bytes + training_state_bytes(self.param_bytes)

    @property
    def step_bytes(self) -> int:
        return self.activation_bytes + self.state_bytes


def measure_step(model: SpikingNet, start: int, stop: int, batch: int, head: SpikingNet | None = None,
                 device: torch.device | str = "cpu") -> StepCost:
    """Exact cost of one temporally decoupled training step of layers ``start:stop`` (+ ``head``).

    Works on deep copies, so the caller's modules (weights, BatchNorm statistics,
    gradients) are untouched. The state entering the step is detached, as in training.
    """
    layers = nn.ModuleList(copy.deepcopy(list(model.layers[start:stop]))).to(device).train()
    head_copy = copy.deepcopy(head).to(device).train() if head is not None else None
    params = list(layers.parameters()) + (list(head_copy.parameters()) if head_copy is not None else [])
    x = _random_input(tuple(layers[0].in_shape), batch, device)
    states: list[Any] = []
    with torch.random.fork_rng(devices=[]):
        with SavedTensorMeter(exclude=params) as meter:
            for layer in layers:
                x, state = layer(x, layer.init_state(batch, device))
                states.append(carried(layer, state))
            if head_copy is not None:
                x, head_states = head_copy.step(x, head_copy.init_state(batch, device))
                states += [carried(layer, st) for layer, st in zip(head_copy.layers, head_states)]
            if x.dim() == 2 and (head_copy is not None or layers[-1].kind == "readout"):
                loss = F.cross_entropy(x, torch.zeros(batch, dtype=torch.long, device=device))
            else:
                loss = x.float().mean()
            loss.backward()
    return StepCost(meter.peak, param_bytes(params), state_bytes(states))


def balanced_boundaries(model: SpikingNet, subnets: int, batch: int = 32,
                        device: torch.device | str = "cpu") -> Boundaries:
    """``subnets`` contiguous parts whose largest per-step training memory is minimal."""
    units = units_of(model)
    if not 1 <= subnets <= len(units):
        raise ValueError(f"--subnets {subnets} is not possible for {model.config.arch}: it has {len(units)} "
                         f"pieces a cut may separate; use 1..{len(units)}")
    if subnets == 1:
        return [(0, len(model.layers))]
    costs = [measure_step(model, a, b, batch, device=device).training_bytes for a, b in units]
    n = len(units)
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][i]: minimal largest part when the first i units form k parts
    best = [[inf] * (n + 1) for _ in range(subnets + 1)]
    cut = [[0] * (n + 1) for _ in range(subnets + 1)]
    best[0][0] = 0
    for k in range(1, subnets + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    edges = [n]
    for k in range(subnets, 0, -1):
        edges.append(cut[k][edges[-1]])
    edges.reverse()
    return check_boundaries(model, [(units[a][0], units[b - 1][1]) for a, b in zip(edges, edges[1:])])


def partition(model: SpikingNet, subnets: int = 1, splits: list[int] | None = None, batch: int = 32,
              device: torch.device | str = "cpu") -> Boundaries:
    """Explicit ``splits`` (layer indices where subnetworks 1.. start) or a balanced ``subnets``-way cut."""
    if splits:
        bounds = boundaries_from_splits(model, splits)
        if subnets not in (1, len(bounds)):
            raise ValueError(f"--splits {splits} gives {len(bounds)} subnetworks but --subnets is {subnets}; "
                             "give one or make them agree")
        return bounds
    return balanced_boundaries(model, subnets, batch, device)
