"""The STDL training step: pure functions over (model, heads, boundaries, batch).

One batch ``frames (T, B, ...)``, ``labels (B,)``. For subnetwork ``k`` at step ``t`` with
logits ``z[k, t]`` (its head's readout, or the model's readout for the last one)::

    L[k, t] = CE(z[k, t], y) / T + mse_weight * MSE(z[k, t], onehot(y)) / T

* **spatial decoupling**: subnetwork ``k`` reads ``x[k-1, t].detach()``, so ``L[k, t]``
  gives gradients only to subnetwork ``k`` and its head;
* **temporal credit** (``temporal=True``), one of :data:`TEMPORAL_CREDITS`:

  - ``none``: the neuron state entering every step is detached (SLTT's rule): a weight
    gets ``dL[t]/dW`` through step ``t`` alone;
  - ``window``: the state is detached every ``window`` steps only, and each window is
    one backward: exact BPTT inside a window, nothing across windows;
  - ``trace``: as ``none``, but each synapse's weight gradient reads the presynaptic
    eligibility trace ``e[t]`` (:func:`presynaptic_trace`) instead of the input
    ``s[t]``: ``dW = delta_I[t] (x) e[t]``, the gradient through the neuron's own
    leak (exact for a neuron that has not reset), OTTT's rule with CUBA's kernel.

  ``temporal=False`` is BPTT: one window of all ``T`` steps.

**Chunked forward.** The steps of a chunk (a window; ``chunk`` steps for ``none`` and
``trace``) go through a subnetwork layer by layer: a synapse (conv, linear) or a pooling
layer runs once on the chunk with time folded into the batch ``(C * B, ...)``, and only the
neurons step in sequence. With the state detached per step the chunk's graph is ``C``
disconnected step graphs, so the gradient is the per-step one; memory grows with ``C``
(never with ``T``). Autograd holds one chunk of one subnetwork (+ head) at a time.

Gradients accumulate in ``.grad``; the caller steps the optimizer once per batch, or per
chunk through ``on_step`` (online update; ``none``/``trace`` then use chunks of one step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn import functional as F

from ..layers import Layer, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense
from ..models import SpikingNet
from ..neuron import CubaParams, CubaState, cuba_step, detach_state
from .memory import state_bytes

#: temporal-credit rules of the decoupled methods (see the module docstring)
TEMPORAL_CREDITS = ("none", "trace", "window")

#: steps per chunk for ``none`` and ``trace`` (time folded into the synapses' batch): 2 was
#: the fastest in the interleaved timing (docs/stdl.md) at 2 steps of activation memory
CHUNK = 2


@dataclass
class BatchResult:
    """Loss and predictions of one training batch.

    loss: sum over subnetworks and steps of ``L[k, t]`` (a float).
    subnet_loss: per subnetwork, summed over steps.
    logits: time-averaged logits of the last subnetwork's exit ``(B, classes)`` (detached): the
        model's readout, or ``heads[-1]`` for a group that ends before it.
    outputs: with ``keep_outputs``, the detached output of the last subnetwork at every step
        ``(T, B, ...)`` (what the next group of subnetworks reads); else None.
    state_bytes: bytes of the state carried from step to step (neuron states of the
        subnetworks and heads, and the traces of ``trace``), the persistent part of the
        step's activation memory beside the saved tensors.
    """

    loss: float
    subnet_loss: list[float]
    logits: torch.Tensor
    outputs: torch.Tensor | None = None
    state_bytes: int = 0


def step_loss(logits: torch.Tensor, labels: torch.Tensor, steps: int, mse_weight: float = 0.0) -> torch.Tensor:
    """``sum_t L[t]`` over the steps of ``logits (C, B, classes)`` (or one step's ``(B, classes)``)::

        L[t] = CE(z[t], y) / T + mse_weight * MSE(z[t], onehot(y)) / T   (means over the batch)
    """
    z = logits.float()
    if z.dim() == 2:
        z = z[None]
    batch, classes = z.shape[1:]
    z = z.flatten(0, 1)
    y = labels.repeat(len(z) // batch)
    loss = F.cross_entropy(z, y, reduction="sum") / (batch * steps)
    if mse_weight:
        target = F.one_hot(y, classes).to(z.dtype)
        loss = loss + mse_weight * F.mse_loss(z, target, reduction="sum") / (batch * classes * steps)
    return loss


# ------------------------------------------------------------------------ traced synapse


class _TracedSynapse(torch.autograd.Function):
    """``y = W * x + b`` forward; backward: ``dx = W^T * dy``, ``dW = dy (x) e`` with the trace ``e``.

    Saves the trace instead of the input, so it costs what the plain synapse costs.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, trace: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                conv: torch.nn.Conv2d | None) -> torch.Tensor:
        ctx.save_for_backward(trace, weight)
        ctx.conv, ctx.has_bias, ctx.x_shape = conv, bias is not None, x.shape
        if conv is None:
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        trace, weight = ctx.saved_tensors
        conv = ctx.conv
        gx = gw = gb = None
        if conv is None:
            if ctx.needs_input_grad[0]:
                gx = grad @ weight
            gw = grad.t() @ trace
            gb = grad.sum(0) if ctx.has_bias else None
        else:
            args = (conv.stride, conv.padding, conv.dilation, conv.groups)
            if ctx.needs_input_grad[0]:
                gx = torch.nn.grad.conv2d_input(ctx.x_shape, weight, grad, *args)
            gw = torch.nn.grad.conv2d_weight(trace, weight.shape, grad, *args)
            gb = grad.sum((0, 2, 3)) if ctx.has_bias else None
        return gx, None, gw, gb, None


def presynaptic_trace(x: torch.Tensor, carry: tuple[torch.Tensor, torch.Tensor] | None, layer: Layer
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Eligibility traces of the inputs ``x (C, B, ...)`` of ``layer``'s synapse, under no-grad.

    With the layer's decays ``a_u``, ``a_v``::

        q[t] = (1 - a_u) q[t-1] + x[t]        # the current's kernel
        e[t] = (1 - a_v) e[t-1] + q[t]        # the voltage's kernel

    so ``e[t] = dv[t]/dW`` of a neuron without reset: ``v[t] = sum_tau k[t - tau] W x[tau]``
    with CUBA's double-exponential kernel ``k``. Returns ``(e (C, B, ...), (q, e) at the last step)``
    (``q`` a scalar 0 when ``a_u = 1``: it is not carried then).
    """
    p = layer.neuron
    with torch.no_grad():
        q, e = carry if carry is not None else (torch.zeros_like(x[0]), torch.zeros_like(x[0]))
        out = []
        for x_t in x.unbind(0):
            q = x_t if p.current_decay == 1.0 else (1.0 - p.current_decay) * q + x_t
            e = q if p.voltage_decay == 1.0 else (1.0 - p.voltage_decay) * e + q
            out.append(e)
        # q[t-1] is not read when a_u = 1 (q = x): carry an empty one, not a copy of the input
        return torch.stack(out), (q if p.current_decay != 1.0 else e.new_zeros(()), e)


# ------------------------------------------------------------------------ chunked forward


def _fold(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _synapse_layer(layer: Layer) -> bool:
    """Layers whose synapse the engine runs on a folded chunk (the rest step as a whole)."""
    return isinstance(layer, (SpikingConv2d, SpikingDense, SpikingRecurrentDense))


def _traced(layer: Layer) -> bool:
    """Whether ``trace`` changes this layer's weight gradient (its voltage has memory)."""
    p = layer.neuron
    return not (p.current_decay == 1.0 and p.voltage_decay == 1.0)


def check_credit(net: SpikingNet, credit: str, window: int) -> None:
    """One ``ValueError`` for an unknown rule, a bad window, or ``trace`` on a layer it cannot trace."""
    if credit not in TEMPORAL_CREDITS:
        raise ValueError(f"--temporal-credit {credit!r} is unknown; use one of {', '.join(TEMPORAL_CREDITS)}")
    if window < 1:
        raise ValueError(f"--window {window} must be >= 1 (steps per backward)")
    if credit == "trace":
        for name, layer in zip(net.layer_names(), net.layers):
            if layer.stateful and not _synapse_layer(layer):
                raise ValueError(f"--temporal-credit trace traces conv and dense synapses; layer {name} is not "
                                 "one (use --temporal-credit window or none)")


def _recurrent_input(layer: SpikingRecurrentDense, spike: torch.Tensor, carry: Any, traced: bool
                     ) -> tuple[torch.Tensor, Any]:
    """``W_rec s[t-1]`` of a recurrent dense layer (``spike`` is its state's ``s[t-1]``); with
    ``traced`` the weight gradient reads the trace of ``s[t-1]`` (:func:`presynaptic_trace`,
    carried in ``carry``) instead, as the feed-forward synapse reads its input's."""
    if not traced:
        return layer.recurrent(spike), carry
    trace, carry = presynaptic_trace(spike[None], carry, layer)
    return _TracedSynapse.apply(spike, trace[0], layer.recurrent.weight, None, None), carry


def run_chunk(net: SpikingNet, start: int, stop: int, x: torch.Tensor, states: list[Any],
              traces: list[Any] | None, detach_steps: bool) -> tuple[torch.Tensor, list[Any]]:
    """Layers ``start:stop`` of ``net`` on the chunk ``x (C, B, ...)``; returns ``(out (C, B, ...), states)``.

    ``states`` and ``traces`` (``None`` = no trace; else a list over the layers, updated in place)
    cover those layers. ``detach_steps`` detaches each layer's state before every step.
    A recurrent dense layer folds its feed-forward synapse like the others and adds
    ``W_rec s[t-1]`` step by step (its trace entry is the pair of both synapses' carries).
    """
    steps, batch = x.shape[:2]
    new_states = []
    for j, (layer, state) in enumerate(zip(net.layers[start:stop], states)):
        if not layer.stateful:
            y, _ = layer(_fold(x))
            x = y.unflatten(0, (steps, batch))
            new_states.append(state)
            continue
        if not _synapse_layer(layer):  # a residual block: steps whole
            out = []
            for x_t in x.unbind(0):
                state = detach_state(state) if detach_steps else state
                y, state = layer(x_t, state)
                out.append(y)
            x = torch.stack(out)
            new_states.append(state)
            continue
        syn = layer.synapse
        recurrent = isinstance(layer, SpikingRecurrentDense)
        traced = traces is not None and _traced(layer)
        rec_carry = None
        if traced:
            carry = traces[j]
            if recurrent:
                carry, rec_carry = carry if carry is not None else (None, None)
            trace, carry = presynaptic_trace(x, carry, layer)
            traces[j] = carry
            conv = syn if isinstance(syn, torch.nn.Conv2d) else None
            i = _TracedSynapse.apply(_fold(x), _fold(trace), syn.weight, syn.bias, conv)
        else:
            i = syn(_fold(x))
        i = i.unflatten(0, (steps, batch))
        out = []
        for i_t in i.unbind(0):
            if layer.bn is not None:
                i_t = layer.bn(i_t)  # per step: batch statistics over B, as in inference order
            state = detach_state(state) if detach_steps else state
            if recurrent:
                r_t, rec_carry = _recurrent_input(layer, state.spike, rec_carry, traced)
                i_t = i_t + r_t
            s, state = cuba_step(i_t, state, layer.neuron)
            out.append(state.voltage if isinstance(layer, Readout) else s)
        if traced and recurrent:
            traces[j] = (traces[j], rec_carry)
        x = torch.stack(out)
        new_states.append(carried(layer, state))
    return x, new_states


def carried_state(state: CubaState, p: CubaParams) -> CubaState:
    """What of a CUBA state the next step reads: ``u[t-1]`` only when ``a_u < 1`` and
    ``v[t-1]``, ``s[t-1]`` only when ``a_v < 1`` (:func:`~stdl_edge.neuron.cuba_subthreshold`);
    the rest becomes a 0-dim zero. With ``a_u = 1`` (the default) ``u[t] = I[t]`` is a view of
    the chunk's synaptic currents, so carrying it would also keep the whole chunk's currents alive.
    """
    zero = state.voltage.new_zeros(())
    keep_v = p.voltage_decay != 1.0
    return CubaState(state.current if p.current_decay != 1.0 else zero, state.voltage if keep_v else zero,
                     state.spike if keep_v else zero)


def carried(layer: Layer, state: Any) -> Any:
    """:func:`carried_state` of a CUBA layer's state; any other state whole."""
    return carried_state(state, layer.neuron) if isinstance(state, CubaState) else state


# ------------------------------------------------------------------------ the step


def train_batch(model: SpikingNet, heads: list[SpikingNet], boundaries: list[tuple[int, int]],
                frames: torch.Tensor, labels: torch.Tensor, *, temporal: bool = True, credit: str = "none",
                window: int = 1, mse_weight: float = 0.0, autocast: torch.autocast | None = None,
                on_step: Callable[[int], None] | None = None, keep_outputs: bool = False,
                chunk: int = CHUNK) -> BatchResult:
    """Accumulate the gradients of one batch into ``.grad`` (no optimizer step).

    ``boundaries`` are the subnetworks to train, contiguous: all of the model's, or a
    *group* of them. ``heads[k]`` is the auxiliary head of subnetwork ``k`` of the group:
    ``len(heads) == len(boundaries) - 1`` when the group ends at the model's readout,
    ``len(heads) == len(boundaries)`` when it ends before it (the last one trains on
    ``heads[-1]``). ``frames (T, B, ...)`` is the input of the group's first subnetwork.
    Calling this group by group, each fed the previous group's ``outputs`` (``keep_outputs``),
    gives exactly the gradients of one call over all subnetworks.

    ``credit`` and ``window`` choose the temporal credit (module docstring; ``window`` only
    matters for ``credit='window'``); ``temporal=False`` is BPTT. ``chunk`` is the steps per
    folded chunk for ``none``/``trace`` (speed and memory only: the gradient does not change).
    ``on_step(t)`` runs after the backward of the chunk that ends at step ``t`` (decoupled only).
    """
    if frames.dim() < 2 or frames.shape[1] != labels.shape[0]:
        raise ValueError(f"frames must be (T, B, ...) with B = {labels.shape[0]} labels, got shape "
                         f"{tuple(frames.shape)}")
    K = len(boundaries)
    if len(heads) not in (K - 1, K):
        raise ValueError(f"{K} subnetworks need {K - 1} auxiliary heads (the last one ends at the readout) or {K} "
                         f"(a group that ends before it); got {len(heads)}")
    check_credit(model, credit, window)
    for h in heads:
        check_credit(h, credit, window)
    steps, batch = frames.shape[:2]
    if not temporal:
        size, detach_steps = steps, False
    elif credit == "window":
        size, detach_steps = window, False
    else:
        size, detach_steps = (1 if on_step is not None else max(1, chunk)), True
    device = frames.device
    init = model.init_state(batch, device)
    states = [init[a:b] for a, b in boundaries]
    head_of = [heads[k] if k < len(heads) else None for k in range(K)]
    head_states = [h.init_state(batch, device) if h is not None else None for h in head_of]
    use_trace = temporal and credit == "trace"
    traces = [[None] * (b - a) for a, b in boundaries] if use_trace else None
    head_traces = [[None] * len(h.layers) if h is not None else None for h in head_of] if use_trace else None
    subnet_loss = [0.0] * K
    total_logits = torch.zeros(batch, model.num_classes, device=device)
    outputs: list[torch.Tensor] = []
    ctx = autocast if autocast is not None else _null()
    for t0 in range(0, steps, size):
        x = frames[t0:t0 + size]
        for k, (a, b) in enumerate(boundaries):
            states[k] = detach_state(states[k])
            head = head_of[k]
            with ctx:
                out, states[k] = run_chunk(model, a, b, x.detach(), states[k],
                                           traces[k] if traces is not None else None, detach_steps)
                if head is not None:
                    head_states[k] = detach_state(head_states[k])
                    logits, head_states[k] = run_chunk(head, 0, len(head.layers), out, head_states[k],
                                                       head_traces[k] if head_traces is not None else None,
                                                       detach_steps)
                else:
                    logits = out
            loss = step_loss(logits, labels, steps, mse_weight)
            subnet_loss[k] += float(loss.detach())
            if k == K - 1:
                total_logits += logits.detach().float().sum(0)
                if keep_outputs:
                    outputs.append(out.detach())
            loss.backward()
            x = out
        if temporal and on_step is not None:
            on_step(min(t0 + size, steps) - 1)
    carried_bytes = state_bytes([states, head_states, traces, head_traces])
    return BatchResult(sum(subnet_loss), subnet_loss, total_logits / steps,
                       torch.cat(outputs) if keep_outputs else None, carried_bytes)


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
