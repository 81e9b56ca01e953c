"""The decoupled pipeline: contiguous groups of subnetworks on different ranks.

STDL's subnetwork ``k`` reads ``x[k-1, t].detach()`` and no gradient crosses a boundary, so
a group of subnetworks trains from its predecessor's *forward* outputs alone. With ``G``
stages, stage ``g`` owns the subnetworks ``groups[g] = [i, j)`` (their layers and auxiliary
heads), and for every batch ``b``:

1. receives the detached output ``x[i-1] (T, B, ...)`` of stage ``g - 1`` (stage 0 reads the
   event frames),
2. trains its group on it (:func:`~stdl_edge.stdl.engine.train_batch` with the group's
   boundaries and heads, ``keep_outputs=True``), sending ``x[j-1]`` on to stage ``g + 1``
   as soon as the batch is done,
3. steps its optimizer, then goes on to batch ``b + 1`` while stage ``g + 1`` trains on ``b``.

**Schedule that guarantees bit-identity** with single-process training (same seed, CPU,
deterministic kernels): every stage processes the batches in the same order, and the
activations stage ``g`` trains on for batch ``b`` (and time step ``t``) are the ones stage
``g - 1`` computed *while training* on ``(b, t)``, with the weights it had at that moment
(after the updates of batches ``< b``, and of steps ``< t`` with ``online``). That is what one
process computes too: there subnetwork ``j`` at ``(b, t)`` reads the output that subnetwork
``j - 1`` produced at ``(b, t)`` before any later update. Nothing a stage does feeds back
into an earlier one (no gradient, no shared optimizer state: Adam is per parameter, and the
cosine schedule depends only on the batch count), so each stage's weights follow exactly
the single-process trajectory. A global-norm gradient clip or anything else that couples
the subnetworks would break this, and none exists.

Grouping: :func:`balance_groups` cuts the K subnetworks into G contiguous groups that
minimise the largest group cost (training memory by default, or measured time per step).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from ..models import SpikingNet
from .auxiliary import Plan
from .engine import train_batch


@dataclass(frozen=True)
class Stage:
    """What stage ``index`` of a ``stages``-stage pipeline trains.

    first, stop: its subnetworks ``first..stop-1`` of the plan's K.
    boundaries: their layer ranges; heads: their auxiliary heads (one per subnetwork, except
    the last stage, whose last subnetwork ends in the model's readout).
    """

    index: int
    stages: int
    first: int
    stop: int
    boundaries: list[tuple[int, int]]
    heads: list[SpikingNet]

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.stages - 1

    def modules(self, model: SpikingNet) -> list[torch.nn.Module]:
        """The modules this stage trains: its layers of ``model``, then its heads."""
        return [model.layers[i] for a, b in self.boundaries for i in range(a, b)] + list(self.heads)


def balance_groups(costs: Sequence[float], stages: int) -> list[tuple[int, int]]:
    """Cut ``len(costs)`` subnetworks into ``stages`` contiguous non-empty groups ``[(i, j), ...]``
    minimising the largest group sum (ties: the earliest cut points). Exhaustive over the
    ``C(K - 1, G - 1)`` cuts (K is small)."""
    K = len(costs)
    if not 1 <= stages <= K:
        raise ValueError(f"--pipeline {stages} needs between 1 and {K} stages: the plan has {K} subnetwork(s), "
                         "and each stage trains at least one (raise --subnets or lower --pipeline)")
    best: tuple[float, list[tuple[int, int]]] | None = None
    for cuts in itertools.combinations(range(1, K), stages - 1):
        edges = [0, *cuts, K]
        groups = list(zip(edges, edges[1:]))
        worst = max(sum(costs[i:j]) for i, j in groups)
        if best is None or worst < best[0]:
            best = (worst, groups)
    assert best is not None
    return best[1]


def memory_costs(plan_record: dict) -> list[float]:
    """Training bytes of each subnetwork + head for one step (the plan table), from a plan record."""
    return [float(s["total"]["training_bytes"]) for s in plan_record["subnets"]]


def step_seconds(model: SpikingNet, plan: Plan, batch: int, repeats: int = 3) -> list[float]:
    """Median wall seconds of one decoupled training step (forward + backward) of each subnetwork
    with its head, at ``batch`` random binary frames, on one torch thread as training runs on
    CPU: the time cost of :func:`balance_groups`. The caller's gradients are cleared afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _step_seconds(model, plan, batch, repeats)
    finally:
        torch.set_num_threads(threads)


def _step_seconds(model: SpikingNet, plan: Plan, batch: int, repeats: int) -> list[float]:
    K = len(plan.boundaries)
    frames = (torch.rand(1, batch, *model.input_shape, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    labels = torch.zeros(batch, dtype=torch.long)
    x = frames
    seconds = []
    for k, bounds in enumerate(plan.boundaries):
        heads = plan.heads[k:k + 1]
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = train_batch(model, heads, [bounds], x, labels, keep_outputs=True)
            runs.append(time.perf_counter() - t0)
        seconds.append(sorted(runs)[len(runs) // 2])
        if k < K - 1:
            x = result.outputs
    for p in list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]:
        p.grad = None
    return seconds


@dataclass(frozen=True)
class StageCost:
    """One stage of a grouping as ``stdl-edge plan --pipeline G`` shows it.

    first, stop: its subnetworks; start, end: its layers of the primary model.
    training_bytes: sum of its subnetworks' training memory for one step (with heads), bytes.
    step_seconds: sum of their measured time for one training step, seconds (None: not measured).
    """

    index: int
    first: int
    stop: int
    start: int
    end: int
    training_bytes: float
    step_seconds: float | None = None


def plan_stages(model: SpikingNet, plan: Plan, stages: int, balance: str = "memory") -> list[StageCost]:
    """The ``stages``-way grouping of ``plan`` that balances ``balance`` ("memory": training
    bytes per step, what training uses; "time": measured seconds per step on this machine),
    with the memory of each stage and, for "time", its seconds. Timing runs a step of each
    subnetwork (BatchNorm statistics of ``model`` and its heads move, as in a training step)."""
    if balance not in ("memory", "time"):
        raise ValueError(f"--balance {balance!r} must be memory or time")
    memory = memory_costs(plan.to_dict())
    seconds = step_seconds(model, plan, plan.batch) if balance == "time" else None
    groups = balance_groups(memory if seconds is None else seconds, stages)
    return [StageCost(g, i, j, plan.boundaries[i][0], plan.boundaries[j - 1][1], sum(memory[i:j]),
                      None if seconds is None else sum(seconds[i:j])) for g, (i, j) in enumerate(groups)]


def make_stage(plan: Plan, plan_record: dict, index: int, stages: int) -> Stage:
    """Stage ``index`` of the memory-balanced ``stages``-way grouping of ``plan``."""
    first, stop = balance_groups(memory_costs(plan_record), stages)[index]
    K = len(plan.boundaries)
    return Stage(index, stages, first, stop, list(plan.boundaries[first:stop]), plan.heads[first:min(stop, K - 1)])
