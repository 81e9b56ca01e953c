"""Spiking layers: thin modules over :func:`stdl_edge.neuron.cuba_step`.

Every layer maps one time step: ``out, new_state = layer(x, state)``. Shapes are
per sample and fixed at construction (``in_shape``, ``out_shape``), so a layer can
size its own state, and exporters and memory planners can read them. Stateless
layers (pooling, flatten) use the empty state ``()``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .neuron import READOUT_PARAMS, CubaParams, CubaState, cuba_step, zero_state

Shape = tuple[int, ...]


class Layer(nn.Module):
    """Base class. ``kind`` names the layer type for exporters and tables."""

    kind: str = "layer"
    in_shape: Shape
    out_shape: Shape

    def init_state(self, batch: int, device: torch.device | str | None = None) -> Any:
        return ()

    @property
    def stateful(self) -> bool:
        """True when the layer carries state from step to step (its ``init_state`` is not ``()``)."""
        return False

    @property
    def spiking(self) -> bool:
        """True when the layer emits spikes: every stateful layer except the (voltage) readout."""
        return self.stateful

    def extra_repr(self) -> str:
        return f"{self.in_shape} -> {self.out_shape}"


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of a convolution along one side: ``(size + 2 padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


class _CubaLayer(Layer):
    """Synapse (+ optional BatchNorm) -> CUBA LIF. Subclasses build ``synapse``, ``bn``, ``neuron``.

    ``dropout`` p > 0 drops each input spike with probability p (scaling the rest by
    ``1 / (1 - p)``) in training mode, a fresh mask each step; in eval mode, and so in every
    export, it is the identity.
    """

    bn: nn.Module | None
    neuron: CubaParams
    dropout: float = 0.0

    @property
    def synapse(self) -> nn.Module:
        raise NotImplementedError

    @property
    def stateful(self) -> bool:
        return True

    def init_state(self, batch: int, device: torch.device | str | None = None) -> CubaState:
        return zero_state((batch, *self.out_shape), device)

    def synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        """``I[t] = BN(W * x)`` (BN only when built with it; ``x`` after the training dropout)."""
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout, training=True)
        i = self.synapse(x)
        return self.bn(i) if self.bn is not None else i

    def forward(self, x: torch.Tensor, state: CubaState) -> tuple[torch.Tensor, CubaState]:
        return cuba_step(self.synaptic_input(x), state, self.neuron)


def _dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p={p} is outside [0, 1)")
    return float(p)


class SpikingConv2d(_CubaLayer):
    """Conv2d (+ optional BatchNorm) -> CUBA LIF. Input/output ``(B, C, H, W)`` spikes."""

    kind = "conv"

    def __init__(self, in_shape: Shape, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, bias: bool = False, batchnorm: bool = False,
                 neuron: CubaParams = CubaParams(), dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = in_shape
        padding = kernel_size // 2 if padding is None else padding
        self.in_shape = tuple(in_shape)
        self.out_shape = (out_channels, conv_out(h, kernel_size, stride, padding),
                          conv_out(w, kernel_size, stride, padding))
        self.conv = nn.Conv2d(c, out_channels, kernel_size, stride, padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if batchnorm else None
        self.neuron = neuron
        self.dropout = _dropout(dropout)

    @property
    def synapse(self) -> nn.Module:
        return self.conv


class _LinearLayer(_CubaLayer):
    """A ``linear`` synapse ``(B, N_in) -> (B, N_out)`` (+ optional BatchNorm1d) and its neuron."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, batchnorm: bool = False,
                 neuron: CubaParams = CubaParams(), dropout: float = 0.0) -> None:
        super().__init__()
        self.in_shape = (in_features,)
        self.out_shape = (out_features,)
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features) if batchnorm else None
        self.neuron = neuron
        self.dropout = _dropout(dropout)

    @property
    def synapse(self) -> nn.Module:
        return self.linear


class SpikingDense(_LinearLayer):
    """Linear (+ optional BatchNorm1d) -> CUBA LIF. Input ``(B, N_in)``, output ``(B, N_out)``."""

    kind = "dense"


class SpikingRecurrentDense(_LinearLayer):
    """Linear (+ optional BatchNorm1d) plus a recurrent linear from the layer's own spikes -> CUBA LIF.

    Input ``(B, N_in)``, output ``(B, N)``; per step, with ``s[t-1]`` the spike the layer emitted
    the step before (``state.spike``, so the recurrence is carried like the neuron's state)::

        I[t] = BN(W x[t] + b) + W_rec s[t-1]      # W (N, N_in), W_rec (N, N), no recurrent bias

    BatchNorm (and the training dropout) act on the feed-forward input only. The one-step delay
    of the recurrent input is the chip's: netx's ``dense_rec`` (Lava's ``RecurrentDense``)
    delivers a layer's spikes of step ``t`` to itself at ``t + 1``, as it delivers feed-forward
    spikes to the next layer, so on a device whose every layer lags one step the float model
    and the chip see the same ``s[t-1]`` (docs/loihi.md).
    """

    kind = "dense_rec"

    def __init__(self, in_features: int, out_features: int, bias: bool = False, batchnorm: bool = False,
                 neuron: CubaParams = CubaParams(), dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features, bias, batchnorm, neuron, dropout)
        self.recurrent = nn.Linear(out_features, out_features, bias=False)

    def forward(self, x: torch.Tensor, state: CubaState) -> tuple[torch.Tensor, CubaState]:
        return cuba_step(self.synaptic_input(x) + self.recurrent(state.spike), state, self.neuron)


class Readout(SpikingDense):
    """Non-spiking readout: ``v[t] = W s[t] + b`` (CUBA with du = dv = 1, no threshold).

    Returns the voltage as the step's logits; the prediction is its mean over time.
    ``neuron`` may give the integrator decays (a leaky or perfect integrator, as imported
    NIR ``LI``/``CubaLI``/``I`` readouts are); its threshold must be ``inf``.
    """

    kind = "readout"

    @property
    def spiking(self) -> bool:
        return False

    def __init__(self, in_features: int, num_classes: int, bias: bool = True,
                 neuron: CubaParams = READOUT_PARAMS, dropout: float = 0.0) -> None:
        if neuron.spiking:
            raise ValueError(f"Readout neuron threshold={neuron.threshold}: a readout does not spike; "
                             "use threshold=inf (or a SpikingDense layer)")
        super().__init__(in_features, num_classes, bias=bias, batchnorm=False, neuron=neuron, dropout=dropout)

    def forward(self, x: torch.Tensor, state: CubaState) -> tuple[torch.Tensor, CubaState]:
        _, new_state = cuba_step(self.synaptic_input(x), state, self.neuron)
        return new_state.voltage, new_state


class _Pool2d(Layer):
    """Stateless ``k x k`` pooling with stride ``k``; ``k`` must divide both sides of the map."""

    def __init__(self, in_shape: Shape, kernel_size: int) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % kernel_size or w % kernel_size:
            raise ValueError(f"{type(self).__name__} kernel {kernel_size} does not divide the input {h}x{w}; "
                             "pick a kernel that divides both sides")
        self.kernel_size = kernel_size
        self.in_shape = tuple(in_shape)
        self.out_shape = (c, h // kernel_size, w // kernel_size)


class AvgPool2d(_Pool2d):
    """Average pooling of spikes (stateless). Folded into the next synapse for Loihi."""

    kind = "avgpool"

    def forward(self, x: torch.Tensor, state: Any = ()) -> tuple[torch.Tensor, Any]:
        return F.avg_pool2d(x, self.kernel_size), state


class SumPool2d(_Pool2d):
    """Sum pooling of spikes (stateless): each output is the spike count of its ``k x k``
    window, ``k**2`` times :class:`AvgPool2d`. What integrate-and-fire chips (Speck class)
    pool with. Computed as a reshape and a sum, so it is exact and exports to ONNX; netx
    has no pooling, so :func:`stdl_edge.quant.fold_model` folds it into the next synapse.
    """

    kind = "sumpool"

    def forward(self, x: torch.Tensor, state: Any = ()) -> tuple[torch.Tensor, Any]:
        c, h, w = self.out_shape
        k = self.kernel_size
        return x.reshape(-1, c, h, k, w, k).sum(dim=(3, 5)), state


class Flatten(Layer):
    """``(B, C, H, W) -> (B, C*H*W)`` in C-order (stateless)."""

    kind = "flatten"

    def __init__(self, in_shape: Shape) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.out_shape = (math.prod(in_shape),)

    def forward(self, x: torch.Tensor, state: Any = ()) -> tuple[torch.Tensor, Any]:
        return x.flatten(1), state


class ResidualState(NamedTuple):
    inner: CubaState  # after the first conv
    out: CubaState  # after the sum


class SpikingResidualBlock(Layer):
    """Spiking basic block: ``s = LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))``.

    The shortcut is identity, or a 1x1 conv + BN where the shape changes. One unit in
    the sequence, so a partition never splits a block. ONNX exports it; netx cannot.
    ``batchnorm=False`` gives the folded form (each conv with a bias, no BatchNorm), which
    is what an imported NIR residual block is.
    """

    kind = "resblock"

    def __init__(self, in_shape: Shape, out_channels: int, stride: int = 1,
                 neuron: CubaParams = CubaParams(), batchnorm: bool = True) -> None:
        super().__init__()
        c = in_shape[0]
        self.first = SpikingConv2d(in_shape, out_channels, 3, stride, bias=not batchnorm, batchnorm=batchnorm,
                                   neuron=neuron)
        self.second = SpikingConv2d(self.first.out_shape, out_channels, 3, 1, bias=not batchnorm,
                                    batchnorm=batchnorm, neuron=neuron)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c != out_channels:
            conv = nn.Conv2d(c, out_channels, 1, stride, bias=not batchnorm)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if batchnorm else nn.Sequential(conv)
        self.in_shape = tuple(in_shape)
        self.out_shape = self.second.out_shape
        self.neuron = neuron

    @property
    def stateful(self) -> bool:
        return True

    def init_state(self, batch: int, device: torch.device | str | None = None) -> ResidualState:
        return ResidualState(self.first.init_state(batch, device), self.second.init_state(batch, device))

    def forward(self, x: torch.Tensor, state: ResidualState) -> tuple[torch.Tensor, ResidualState]:
        h, inner = self.first(x, state.inner)
        skip = x if self.shortcut is None else self.shortcut(x)
        s, out = cuba_step(self.second.synaptic_input(h) + skip, state.out, self.neuron)
        return s, ResidualState(inner, out)
