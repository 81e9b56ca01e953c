"""The STDL training step: pure functions over (model, heads, boundaries, batch).

One batch ``frames (T, B, C, H, W)``, ``labels (B,)``. For subnetwork ``k`` at step ``t``
with logits ``z[k, t]`` (its head's readout, or the model's readout for the last one)::

    L[k, t] = CE(z[k, t], y) / T + mse_weight * MSE(z[k, t], onehot(y)) / T

* **spatial decoupling**: subnetwork ``k`` reads ``x[k-1, t].detach()``, so ``L[k, t]``
  gives gradients only to subnetwork ``k`` and its head;
* **temporal decoupling** (``temporal=True``): the neuron state entering step ``t`` is
  detached and ``L[k, t].backward()`` runs right away, so autograd holds one step of one
  subnetwork (+ head) at a time. ``temporal=False`` keeps the graph over all steps and
  calls ``backward`` once on ``sum L`` (BPTT).

Gradients accumulate in ``.grad`` over the steps of the batch; the caller steps the
optimizer once per batch, or per step through ``on_step`` (online update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn import functional as F

from ..models import SpikingNet
from ..neuron import detach_state


@dataclass
class BatchResult:
    """Loss and predictions of one training batch.

    loss: sum over subnetworks and steps of ``L[k, t]`` (a float).
    subnet_loss: per subnetwork, summed over steps.
    logits: time-averaged readout of the full model ``(B, classes)`` (detached), or of
        ``heads[-1]`` for a group that does not end in the readout.
    outputs: with ``keep_outputs``, the detached output of the last subnetwork at every step,
        ``(T, B, ...)``; else None.
    """

    loss: float
    subnet_loss: list[float]
    logits: torch.Tensor
    outputs: torch.Tensor | None = None


def step_loss(logits: torch.Tensor, labels: torch.Tensor, steps: int, mse_weight: float = 0.0) -> torch.Tensor:
    """``L = CE(z, y) / T + mse_weight * MSE(z, onehot(y)) / T`` for one step's logits ``z (B, classes)``."""
    z = logits.float()
    loss = F.cross_entropy(z, labels) / steps
    if mse_weight:
        target = F.one_hot(labels, z.shape[1]).to(z.dtype)
        loss = loss + mse_weight * F.mse_loss(z, target) / steps
    return loss


def train_batch(model: SpikingNet, heads: list[SpikingNet], boundaries: list[tuple[int, int]],
                frames: torch.Tensor, labels: torch.Tensor, *, temporal: bool = True, mse_weight: float = 0.0,
                autocast: torch.autocast | None = None,
                on_step: Callable[[int], None] | None = None, keep_outputs: bool = False) -> BatchResult:
    """Accumulate the gradients of one batch into ``.grad`` (no optimizer step).

    ``heads[k]`` is the auxiliary head of subnetwork ``k`` (``len(heads) == K - 1``; with
    ``len(heads) == K`` the boundaries are a group of subnetworks that does not end in the
    model's readout, and the last one is trained through ``heads[-1]``). ``frames (T, B, ...)``
    is the input of the first subnetwork. ``on_step(t)`` is called after step ``t``'s backward
    (temporal mode only): the online update.
    """
    if frames.dim() < 3:
        raise ValueError(f"frames must be (T, B, ...), got shape {tuple(frames.shape)}")
    if len(heads) not in (len(boundaries) - 1, len(boundaries)):
        raise ValueError(f"{len(boundaries)} subnetworks need {len(boundaries) - 1} auxiliary heads "
                         f"(+ the readout) or {len(boundaries)}; got {len(heads)}")
    steps, batch = frames.shape[:2]
    K = len(boundaries)
    device = frames.device
    states = [model.init_state(batch, device)[a:b] for a, b in boundaries]
    head_states = [h.init_state(batch, device) for h in heads]
    subnet_loss = [0.0] * K
    pending: list[torch.Tensor] = []  # BPTT: losses kept until the end
    total_logits = torch.zeros(batch, model.num_classes, device=device)
    outputs: list[torch.Tensor] = []
    ctx = autocast if autocast is not None else _null()
    for t in range(steps):
        # a copy: the first layer saves its input for backward, and a view would keep (and be
        # counted as) the whole (T, B, ...) batch instead of this step's frame
        x = frames[t].clone()
        for k, (a, b) in enumerate(boundaries):
            if temporal:
                states[k] = detach_state(states[k])
                if k < len(heads):
                    head_states[k] = detach_state(head_states[k])
            with ctx:
                out, states[k] = model.step(x.detach(), states[k], a, b)
                if k < len(heads):
                    logits, head_states[k] = heads[k].step(out, head_states[k])
                else:
                    logits = out
            loss = step_loss(logits, labels, steps, mse_weight)
            subnet_loss[k] += float(loss.detach())
            if k == K - 1:
                total_logits += logits.detach().float()
            if temporal:
                loss.backward()
            else:
                pending.append(loss)
            x = out
        if keep_outputs:
            outputs.append(x.detach())
        if temporal and on_step is not None:
            on_step(t)
    if pending:
        torch.stack(pending).sum().backward()
    return BatchResult(sum(subnet_loss), subnet_loss, total_logits / steps,
                       torch.stack(outputs) if keep_outputs else None)


@torch.no_grad()
def evaluate_batch(model: SpikingNet, heads: list[SpikingNet], boundaries: list[tuple[int, int]],
                   frames: torch.Tensor, spikes: dict[str, float] | None = None) -> list[torch.Tensor]:
    """Time-averaged logits of every exit: ``[head 0, ..., head K-2, full model]``, each ``(B, classes)``.

    Exit ``k < K - 1`` runs subnetworks ``0..k`` and head ``k``. If ``spikes`` is a dict, the
    mean firing rate (spikes per neuron per step, averaged over the batch) of each spiking
    layer of the primary model is added to it under its layer name.
    """
    steps, batch = frames.shape[:2]
    states = [model.init_state(batch, frames.device)[a:b] for a, b in boundaries]
    head_states = [h.init_state(batch, frames.device) for h in heads]
    totals = [torch.zeros(batch, model.num_classes, device=frames.device) for _ in boundaries]
    names = model.layer_names()
    for t in range(steps):
        x = frames[t]
        for k, (a, b) in enumerate(boundaries):
            record: list[torch.Tensor] | None = [] if spikes is not None else None
            x, states[k] = model.step(x, states[k], a, b, record=record)
            if record is not None:
                for i, out in zip(range(a, b), record):
                    layer = model.layers[i]
                    if layer.spiking:
                        spikes[names[i]] = spikes.get(names[i], 0.0) + float(out.float().mean()) / steps
            if k < len(boundaries) - 1:
                logits, head_states[k] = heads[k].step(x, head_states[k])
                totals[k] += logits.float()
            else:
                totals[k] += x.float()
    return [tot / steps for tot in totals]


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
