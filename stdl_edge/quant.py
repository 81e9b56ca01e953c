"""The one fixed-point quantizer of stdl-edge (Loihi / Lava netx conventions).

Long file: about 445 lines, a little over 400: the folds netx needs (BatchNorm, average and
sum pooling) live beside the quantizer that reads them (``quantize_model`` is ``fold_model``'s
one caller).

A float layer ``I = W s + b`` with a CUBA neuron (``a_u``, ``a_v``, ``theta``) becomes, per
layer ``l`` with the power-of-two **scale** ``S_l = 64 * 2**e_l`` (integer units per 1.0;
``e_l`` is the layer's exponent, ``e = 0`` is lava-dl's ``w_scale = 1 << 6``)::

    weight  w = step * clip(round(W * S / step), -127, 127)   # 8-bit signed mantissa, step 2
    bias    b = clip(round(b * S), -4096, 4095)                # 13-bit bias_mant (bias_exp 6)
    vThMant   = round(theta * S)                               # <= 131071 (17 bits)
    iDecay    = round(a_u * 4096),  vDecay = round(a_v * 4096) # 12-bit decays

which is what lava-dl's slayer exports (``quantize_8bit``: even integers in [-256, 254] at
scale 64) with a per-layer exponent. Lava then computes ``u = (W s) << 6``, compares
``v > vThMant << 6``: every quantity of a layer is in the same units, so a per-layer scale
leaves the spikes unchanged up to rounding, and the readout's float value is
``v / (64 * S)``. Rounding is half-to-even (``torch.round``) everywhere: export and the
straight-through fake quantization of QAT (:mod:`stdl_edge.qat`) call the same
:func:`quantize_weight`.

**Exponent choice** (:func:`choose_exponent`): the largest ``e`` such that no weight clips
(``max|W| * S <= 127 * step``), the threshold fits 17 bits, the bias fits 13 bits, and the
worst-case synaptic current of one step, ``max_i sum_j |W_ij| * S`` (per sign, divided by
``a_u`` for a leaky current), stays below ``2**17`` so the 24-bit current never wraps.
``QuantConfig.weight_percentile < 100`` trades clipping of outliers for precision; the
number of clipped weights is reported.

**Folding** (:func:`fold_model`): BatchNorm (eval statistics) into the preceding synapse
(:func:`fold_bn`, the one formula the quantizer, QAT and the ONNX exporter use),
average pooling into the next conv (kernel ``K*k``, stride ``S*k``, padding ``P*k``, weights
``/k**2``) or dense layer (each weight repeated over its ``k x k`` window, ``/k**2``), sum
pooling the same way without the ``/k**2``, and flatten kept as netx's ``flatten`` layer:
netx flattens Lava's ``(x, y, c)`` through ``transpose([2, 1, 0])``, i.e. ``(c, y, x)`` in C
order, which is PyTorch's ``(C, H, W)`` flatten, so dense weights keep the PyTorch column
order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .layers import AvgPool2d, Flatten, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense, SumPool2d
from .loihi import BASE_SCALE, DECAY_UNITY, MAX_CURRENT, MAX_VTH, READOUT_VTH
from .models import SpikingNet
from .neuron import CubaParams


class QuantError(ValueError):
    """A model or layer that cannot be quantized for Loihi; the message names the layer."""


@dataclass(frozen=True)
class QuantConfig:
    """How float layers become Loihi integers.

    weight_bits: bits of the signed weight mantissa (8: values -127..127).
    weight_step: integer weight = step * mantissa (2, lava-dl's convention: even values in
        [-254, 254] that netx's ``optimize_weight_bits`` maps to 8-bit mantissas exactly).
    bias_bits: signed bits of ``bias_mant`` (13 on Loihi).
    max_exponent / min_exponent: range of the per-layer exponent ``e`` (scale ``64 * 2**e``).
    weight_percentile: the |weight| percentile that must fit without clipping (100 = max:
        nothing clips); lower values clip outliers for precision (counted in the report).
    current_headroom: also bound ``e`` so the worst-case one-step current cannot wrap 24 bits.
    """

    weight_bits: int = 8
    weight_step: int = 2
    bias_bits: int = 13
    max_exponent: int = 12
    min_exponent: int = -12
    weight_percentile: float = 100.0
    current_headroom: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.weight_bits <= 8:
            raise ValueError(f"QuantConfig.weight_bits={self.weight_bits} must be in 2..8 (Loihi weights are 8-bit)")
        if self.weight_step not in (1, 2):
            raise ValueError(f"QuantConfig.weight_step={self.weight_step} must be 1 or 2")
        if not 0 < self.weight_percentile <= 100:
            raise ValueError(f"QuantConfig.weight_percentile={self.weight_percentile} must be in (0, 100]")
        if self.min_exponent > self.max_exponent:
            raise ValueError(f"QuantConfig.min_exponent={self.min_exponent} > max_exponent={self.max_exponent}")

    @property
    def mantissa_limit(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def weight_limit(self) -> int:
        """Largest |integer weight| written to the file (254 for the defaults)."""
        return self.weight_step * self.mantissa_limit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- rounding (one place)
class _RoundSTE(torch.autograd.Function):
    """``clip(round(x), lo, hi)`` forward; gradient passes where ``x`` is inside the range."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.save_for_backward((x >= lo) & (x <= hi))
        return torch.clamp(torch.round(x), lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None


def quantize_weight(w: torch.Tensor, scale: float, config: QuantConfig = QuantConfig()) -> torch.Tensor:
    """Integer weights (as a float tensor): ``step * clip(round(w * scale / step), -M, M)``.

    Differentiable with a straight-through gradient, so QAT's fake quantization
    (:func:`stdl_edge.qat.fake_quantize_weight`) and the exporter share this one rounding.

    >>> quantize_weight(torch.tensor([0.5, -0.01, 9.0]), 64.0).tolist()
    [32.0, -0.0, 254.0]
    """
    step = float(config.weight_step)
    m = config.mantissa_limit
    return _RoundSTE.apply(w * (scale / step), -float(m), float(m)) * step


def quantize_bias(b: np.ndarray, scale: float, config: QuantConfig = QuantConfig()) -> tuple[np.ndarray, int]:
    """``bias_mant = clip(round(b * scale))`` in ``bias_bits`` signed; returns ``(mant, clipped)``."""
    hi = (1 << (config.bias_bits - 1)) - 1
    raw = torch.round(torch.as_tensor(b, dtype=torch.float32) * scale).numpy().astype(np.int64)
    clipped = int(((raw > hi) | (raw < -hi - 1)).sum())
    return np.clip(raw, -hi - 1, hi), clipped


def quantize_decay(a: float) -> int:
    """12-bit decay ``round(a * 4096)`` of a fraction per step in [0, 1]."""
    if not 0.0 <= a <= 1.0:
        raise QuantError(f"decay {a} is outside [0, 1]")
    return int(round(a * DECAY_UNITY))


def quantize_threshold(theta: float, scale: float) -> int:
    """``vThMant = round(theta * scale)``, at least 1 (``v > 0`` would fire on any input)."""
    return max(1, int(round(theta * scale)))


# ----------------------------------------------------------------------------- folding
@dataclass
class FoldedLayer:
    """A synaptic layer after BatchNorm and pooling folding, in float (PyTorch layouts).

    kind: 'conv' (weight (O, I, kh, kw)), 'dense' (weight (O, I)) or 'dense_rec' (weight (O, I) and
        weight_rec (O, O), the synapses from the layer's own spikes); 'flatten' has no weights.
    source: index of the layer in the SpikingNet (names ``'<index>.<kind>'``).
    """

    kind: str
    source: int
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: int = 1
    padding: int = 0
    neuron: CubaParams | None = None
    readout: bool = False
    pooled: int = 1  # product of the pooling factors folded in (k per side; average and sum pooling)
    weight_rec: torch.Tensor | None = None


def bn_gain(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> torch.Tensor:
    """Per-output-channel gain ``gamma / sqrt(var + eps)`` of BatchNorm's eval statistics, shape ``(O,)``."""
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.BatchNorm1d | nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W', b')`` of a synapse ``W x + b`` followed by ``bn`` (eval statistics): the one BN fold.

    ``BN(W x + b) = g (W x + b - mean) + beta`` with the gain ``g = gamma / sqrt(var + eps)``
    (:func:`bn_gain`), so per output channel ``o``::

        W'[o] = W[o] * g[o]
        b'[o] = (b[o] - mean[o]) * g[o] + beta[o]      # b = 0 without a bias

    computed as ``b * g + (beta - mean * g)``. ``weight`` is ``(O, I, kh, kw)`` (conv) or
    ``(O, I)`` (dense); ``bias`` and the result's bias are ``(O,)``. ``bn=None`` returns the
    inputs unchanged. Plain torch ops in the weight's dtype, so it is differentiable in
    ``weight`` and ``bias`` (QAT folds inside the forward pass); nothing is detached.

    >>> bn = nn.BatchNorm1d(2, eps=0.0).eval()  # gain 1 / sqrt(4) = 0.5, shift 0.5 - 1 * 0.5 = 0
    >>> with torch.no_grad():
    ...     _ = bn.running_var.fill_(4.0), bn.running_mean.fill_(1.0), bn.bias.fill_(0.5)
    >>> w, b = fold_bn(torch.ones(2, 3), torch.tensor([3.0, -1.0]), bn)
    >>> w.tolist(), b.tolist()
    ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], [1.5, -0.5])
    """
    if bn is None:
        return weight, bias
    gain = bn_gain(bn).to(weight.dtype)
    shift = bn.bias.to(weight.dtype) - bn.running_mean.to(weight.dtype) * gain
    folded = weight * gain.reshape(-1, *([1] * (weight.dim() - 1)))
    return folded, shift if bias is None else bias * gain + shift


def folded_synapse(layer: SpikingConv2d | SpikingDense | SpikingRecurrentDense
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W, b)`` (float32, no gradient) of a conv/dense layer with its BatchNorm folded in (:func:`fold_bn`)."""
    lin = layer.synapse
    w = lin.weight.detach().float()
    b = lin.bias.detach().float() if lin.bias is not None else None
    with torch.no_grad():
        return fold_bn(w, b, layer.bn)


def _fold_pool_into_conv(w: torch.Tensor, stride: int, padding: int, k: int, div: int
                         ) -> tuple[torch.Tensor, int, int]:
    """Conv after pooling by ``k`` == one conv on the unpooled map: kernel ``K*k``, stride ``S*k``,
    ``W'[o, i, u, v] = W[o, i, u // k, v // k] / div`` (``div``: :func:`fold_model`)."""
    big = w.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / div
    return big, stride * k, padding * k


def _fold_pool_into_dense(w: torch.Tensor, pooled_shape: tuple[int, int, int], k: int, div: int) -> torch.Tensor:
    """Dense after pooling by ``k`` + flatten: weight per unpooled pixel ``W[o, c, y//k, x//k] / div``."""
    c, h, wd = pooled_shape
    w4 = w.reshape(w.shape[0], c, h, wd)
    big = w4.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / div
    return big.reshape(w.shape[0], -1)


def fold_model(model: SpikingNet, start: int = 0, stop: int | None = None) -> list[FoldedLayer]:
    """Layers ``start:stop`` as netx can express them: conv, flatten and dense, all folded.

    Pooling by ``k`` (stride ``k``) before a synapse folds into it. With ``s`` the unpooled spikes::

        p[c, i, j] = sum_{di, dj < k} s[c, k i + di, k j + dj] / div,  div = k**2 (AvgPool2d), 1 (SumPool2d)
        W * p = W' * s,  W'[o, c, u, v] = W[o, c, u // k, v // k] / div

    (conv: kernel ``K*k``, stride ``S*k``, padding ``P*k``). Consecutive pools multiply ``k``
    and ``div``. Exact in float; the folded layer reads the unpooled spikes, so the current
    bound of :func:`choose_exponent` sees the real fan-in.

    A recurrent dense layer keeps its recurrent weights as they are (BatchNorm and pooling act
    on its feed-forward input only).

    Raises :class:`QuantError` naming the layer for what netx cannot express (residual
    blocks, pooling with no synapse after it, a current decay < 1 together with a bias, a
    reset other than to zero).
    """
    layers = list(model.layers)[start:stop]
    names = model.layer_names()[start:stop if stop is not None else None]
    out: list[FoldedLayer] = []
    pool, div = 1, 1  # pending pooling factor (per side) and weight divisor (1 / g)
    pool_in_shape: tuple[int, ...] | None = None
    for offset, (layer, name) in enumerate(zip(layers, names)):
        idx = start + offset
        if isinstance(layer, (AvgPool2d, SumPool2d)):
            if pool == 1:
                pool_in_shape = tuple(layer.in_shape)
            k = layer.kernel_size
            pool *= k
            div *= k * k if isinstance(layer, AvgPool2d) else 1
            continue
        if isinstance(layer, Flatten):
            out.append(FoldedLayer("flatten", idx, name, pool_in_shape if pool > 1 else tuple(layer.in_shape),
                                   (int(np.prod(pool_in_shape if pool > 1 else layer.in_shape)),)))
            continue
        if isinstance(layer, (SpikingConv2d, SpikingDense, SpikingRecurrentDense)):
            w, b = folded_synapse(layer)
            neuron = layer.neuron
            if neuron.reset != "zero" and neuron.spiking:
                raise QuantError(f"layer {name}: neuron reset={neuron.reset!r}; Loihi's CUBA neuron resets the "
                                 "voltage to 0, so netx cannot express it; train with --reset zero, or export to ONNX")
            if b is not None and neuron.current_decay != 1.0 and torch.any(b != 0):
                raise QuantError(f"layer {name} has a bias (or folded BatchNorm) and current_decay="
                                 f"{neuron.current_decay} < 1: Loihi adds the bias to the voltage, not the "
                                 "current, so netx cannot express it; train with current_decay=1 or without bias")
            readout = isinstance(layer, Readout)
            if isinstance(layer, SpikingConv2d):
                conv = layer.conv
                if conv.groups != 1 or conv.dilation != (1, 1):
                    raise QuantError(f"layer {name}: grouped or dilated convolutions are not exported")
                if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1] \
                        or conv.padding[0] != conv.padding[1]:
                    raise QuantError(f"layer {name}: non-square kernel, stride or padding is not exported")
                stride, padding = conv.stride[0], conv.padding[0]
                in_shape = tuple(layer.in_shape)
                if pool > 1:
                    w, stride, padding = _fold_pool_into_conv(w, stride, padding, pool, div)
                    in_shape = pool_in_shape
                out.append(FoldedLayer("conv", idx, name, in_shape, tuple(layer.out_shape), w, b, stride, padding,
                                       neuron, readout, pool))
            else:
                in_shape = tuple(layer.in_shape)
                if pool > 1:
                    if not out or out[-1].kind != "flatten":
                        raise QuantError(f"layer {name}: pooling before a dense layer needs a flatten")
                    pooled = tuple(model.layers[out[-1].source].in_shape)
                    w = _fold_pool_into_dense(w, pooled, pool, div)
                    in_shape = out[-1].out_shape
                w_rec = (layer.recurrent.weight.detach().float() if isinstance(layer, SpikingRecurrentDense)
                         else None)
                out.append(FoldedLayer(layer.kind if w_rec is not None else "dense", idx, name, in_shape,
                                       tuple(layer.out_shape), w, b, 1, 0, neuron, readout, pool, w_rec))
            pool, div, pool_in_shape = 1, 1, None
            continue
        raise QuantError(f"layer {name} ({type(layer).__name__}) cannot be expressed in Lava netx "
                         "(netx has input, conv, dense and flatten layers only; residual blocks need ONNX)")
    if pool > 1:
        raise QuantError(f"layer {names[-1]}: pooling at the end of the exported range has no "
                         "synapse to fold into; move the boundary after the next conv/dense layer")
    if not any(f.kind != "flatten" for f in out):
        raise QuantError(f"layers {start}:{stop} contain no conv or dense layer to export")
    return out


# ----------------------------------------------------------------------------- scale choice
@dataclass
class LayerQuant:
    """One quantized synaptic layer and its report entry."""

    kind: str
    source: int
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray  # int64, PyTorch layout
    bias: np.ndarray | None  # int64 bias_mant per output channel/neuron
    exponent: int
    scale: float
    i_decay: int
    v_decay: int
    vth: int
    readout: bool
    stride: int = 1
    padding: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    weight_rec: np.ndarray | None = None  # int64 (O, O), dense_rec only: the same exponent as ``weight``


def _row_current_bound(w: np.ndarray) -> float:
    """Worst-case |one-step current| of a binary-input layer: max over outputs and signs."""
    rows = w.reshape(w.shape[0], -1)
    return float(max(np.clip(rows, 0, None).sum(axis=1).max(), (-np.clip(rows, None, 0)).sum(axis=1).max()))


def choose_exponent(weight: np.ndarray, bias: np.ndarray | None, neuron: CubaParams, config: QuantConfig,
                    readout: bool = False, max_input: float = 1.0) -> tuple[int, str]:
    """The per-layer exponent ``e`` (scale ``64 * 2**e``) and which constraint set it."""
    bounds: dict[str, float] = {}
    absw = np.abs(weight)
    ref = float(absw.max()) if config.weight_percentile >= 100 else float(np.percentile(absw, config.weight_percentile))
    if ref > 0:
        bounds["weight range"] = math.log2(config.weight_limit / (BASE_SCALE * ref))
    if neuron.spiking and not readout:
        bounds["threshold 17 bits"] = math.log2(MAX_VTH / (BASE_SCALE * neuron.threshold))
    if bias is not None and np.any(bias != 0):
        bounds["bias 13 bits"] = math.log2(((1 << (config.bias_bits - 1)) - 1) / (BASE_SCALE * float(np.abs(bias).max())))
    if config.current_headroom and ref > 0:
        leak = max(neuron.current_decay, 1.0 / DECAY_UNITY)
        # weights quantize to at most step*M; bound on the quantized sum, before the << 6
        cur = _row_current_bound(weight) * max_input / leak
        if cur > 0:
            bounds["24-bit current"] = math.log2(MAX_CURRENT / (BASE_SCALE * cur))
    if not bounds:
        return 0, "all-zero layer"
    reason = min(bounds, key=bounds.get)
    e = int(math.floor(bounds[reason] + 1e-12))
    if e > config.max_exponent:
        return config.max_exponent, "max_exponent"
    if e < config.min_exponent:
        return config.min_exponent, f"min_exponent (wanted by {reason})"
    return e, reason


def quantize_folded(f: FoldedLayer, config: QuantConfig = QuantConfig(), max_input: float = 1.0) -> LayerQuant:
    """Quantize one folded conv/dense layer; the report has scale, exponent, clipping, errors.

    A ``dense_rec`` layer quantizes ``[W | W_rec]`` as one matrix (one exponent, as netx's
    ``RecurrentDense`` reads them; the current bound counts both synapses of a neuron) and is
    split back into ``weight`` and ``weight_rec``.
    """
    if f.kind == "flatten" or f.weight is None or f.neuron is None:
        raise QuantError(f"layer {f.name} has no synapse to quantize")
    w = f.weight.float() if f.weight_rec is None else torch.cat([f.weight.float(), f.weight_rec.float()], 1)
    wn = w.double().numpy()
    bn = f.bias.double().numpy() if f.bias is not None else None
    e, reason = choose_exponent(wn, bn, f.neuron, config, readout=f.readout, max_input=max_input)
    scale = BASE_SCALE * 2.0 ** e
    wq = quantize_weight(w, scale, config)
    clipped = int((torch.abs(w * (scale / config.weight_step)) > config.mantissa_limit + 0.5).sum())
    err = (wq / scale - w).abs()
    bias = None
    bias_clipped = 0
    if bn is not None:
        bias, bias_clipped = quantize_bias(bn, scale, config)
    neuron = f.neuron
    if f.readout:
        i_decay, v_decay, vth = DECAY_UNITY, DECAY_UNITY, READOUT_VTH
        if neuron.current_decay != 1.0 or neuron.voltage_decay != 1.0:
            raise QuantError(f"layer {f.name}: a readout must have current_decay = voltage_decay = 1")
    else:
        i_decay, v_decay = quantize_decay(neuron.current_decay), quantize_decay(neuron.voltage_decay)
        vth = quantize_threshold(neuron.threshold, scale)
    report = {
        "layer": f.name, "kind": f.kind, "exponent": e, "scale": scale, "exponent_set_by": reason,
        "weights": int(w.numel()), "clipped_weights": clipped, "zero_weights": int((wq == 0).sum()),
        "max_abs_weight": float(w.abs().max()) if w.numel() else 0.0,
        "max_abs_weight_error": float(err.max()) if w.numel() else 0.0,
        "mean_abs_weight_error": float(err.mean()) if w.numel() else 0.0,
        "clipped_biases": bias_clipped, "vThMant": vth, "iDecay": i_decay, "vDecay": v_decay,
        "threshold_error": 0.0 if f.readout else abs(vth / scale - neuron.threshold),
        "pool_folded": f.pooled,
    }
    wq = wq.numpy().astype(np.int64)
    n_in = f.weight.shape[1]
    return LayerQuant(f.kind, f.source, f.name, f.in_shape, f.out_shape, wq if f.weight_rec is None else wq[:, :n_in],
                      bias, e, scale, i_decay, v_decay, vth, f.readout, f.stride, f.padding, report,
                      None if f.weight_rec is None else wq[:, n_in:])


def quantize_model(model: SpikingNet, config: QuantConfig = QuantConfig(), start: int = 0, stop: int | None = None,
                   input_max: float = 1.0) -> list[LayerQuant | FoldedLayer]:
    """Fold and quantize layers ``start:stop``: a list of :class:`LayerQuant` and flatten markers."""
    out: list[LayerQuant | FoldedLayer] = []
    first = True
    for f in fold_model(model, start, stop):
        if f.kind == "flatten":
            out.append(f)
            continue
        out.append(quantize_folded(f, config, max_input=input_max if first else 1.0))
        first = False
    return out
