"""loihi-sim's synapses: Lava's fixed-point Dense, DelayDense and Conv, as batched BLAS kernels.

* **Dense** (``lava.proc.dense.models.PyDenseModelBitAcc``): ``a = (W s) >> -weight_exp`` with the
  effective weights of :func:`stdl_edge.formats.netx.netx_dense_weights`.
* **DelayDense** (``PyDelayDenseModelBitAcc``, what netx builds for a dense layer with ``delay``):
  per delay ``k`` the partial sum ``a_k = (W_k s) >> -weight_exp`` (shifted per delay, as Lava
  does) lands ``k`` steps later in a ring of ``max_delay + 1`` slots (Lava's ``a_buff`` columns).
* **Conv** (``lava.proc.conv.models.PyConvModelFixed``): cross-correlation with the file's kernel
  (PyTorch layout; netx flips it and Lava convolves), wrapped to 24-bit signed.

Exactness: every kernel works on integers held in floats, and returns them as integer-valued
floats (the simulator's CUBA states are float64 for the same reason: no conversions). :func:`exact_dtype` is where the bound is
checked, per call: with ``bound = max_o sum_i |W_oi|`` (the largest sum of weight magnitudes an
output sees, computed at load) and ``m = max |s|`` of this step's input (1 for spikes), a float32
product is exact while ``bound * m < 2**24``, float64 while ``< 2**53``; beyond that the kernel
falls back to int64 numpy (exact, slower). Conv uses ``torch.nn.functional.conv2d`` (direct
convolution: any summation order of integers below ``2**24`` is exact in float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stdl_edge.formats.netx import DENSE, NetxLayer
from stdl_edge.loihi import UV_BITS

#: largest integer every smaller one of which float32 / float64 hold exactly
FLOAT32_EXACT, FLOAT64_EXACT = 1 << 24, 1 << 53
#: below this fraction of active inputs a single stream's dense synapse gathers weight rows
GATHER_FRACTION = 0.25


def exact_dtype(bound: float, max_in: float) -> Any:
    """float32, float64 or int64: the cheapest dtype in which ``W s`` is exact (see module docstring).

    >>> exact_dtype(255 * 600, 1), exact_dtype(255 * 600, 1000), exact_dtype(2.0 ** 40, 2.0 ** 20)
    (<class 'numpy.float32'>, <class 'numpy.float64'>, <class 'numpy.int64'>)
    """
    total = bound * max_in
    if total < FLOAT32_EXACT:
        return np.float32
    return np.float64 if total < FLOAT64_EXACT else np.int64


def signed_wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of integer-valued ``x`` (int64 or float) to ``bits`` signed bits."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def shift(a: np.ndarray, exp: int) -> np.ndarray:
    """Lava's ``left_shift(a, exp)`` if ``exp > 0`` else ``right_shift(a, -exp)`` (floor), for
    integer arrays or integer-valued floats (a power-of-two scaling and a floor: exact)."""
    if exp == 0:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return a << exp if exp > 0 else a >> (-exp)
    return a * float(1 << exp) if exp > 0 else np.floor(a * (1.0 / (1 << -exp)))


def _max_in(x: np.ndarray, graded: bool) -> float:
    return float(np.abs(x).max()) if graded and x.size else 1.0


class DenseKernel:
    """``x (B, I)`` -> ``W x`` ``(B, O)`` as integer-valued floats (before the exponent); ``w (O, I)``.

    A sparse single stream (fewer than :data:`GATHER_FRACTION` of the inputs non-zero, spikes)
    sums the weight rows of its active inputs (Loihi's own event-driven way), which reads a
    fraction of the matrix; otherwise one BLAS matmul. Both are exact under the same bound.
    """

    def __init__(self, w: np.ndarray) -> None:
        wt = np.asarray(w).T  # (I, O)
        self.bound = float(np.abs(wt).sum(axis=0, dtype=np.int64).max()) if wt.size else 0.0
        self._w: dict[Any, np.ndarray] = {np.float32: np.ascontiguousarray(wt, dtype=np.float32)}
        self._wt = wt

    def weights(self, dtype: Any) -> np.ndarray:
        if dtype not in self._w:
            self._w[dtype] = np.ascontiguousarray(self._wt, dtype=dtype)
        return self._w[dtype]

    def __call__(self, x: np.ndarray, graded: bool, dtype: Any = None) -> np.ndarray:
        """``dtype``: force one (None: :func:`exact_dtype`); ``graded``: ``x`` holds payloads, not 0/1."""
        dtype = dtype or exact_dtype(self.bound, _max_in(x, graded))
        w = self.weights(dtype)
        if x.shape[0] == 1 and not graded and dtype is not np.int64:
            active = np.flatnonzero(x[0])
            if len(active) < GATHER_FRACTION * x.shape[1]:
                return w[active].sum(axis=0, keepdims=True, dtype=dtype)  # integers: any order is exact
        acc = x.astype(dtype, copy=False) @ w
        return acc.astype(np.float64) if dtype is np.int64 else np.rint(acc, out=acc)


class DelayedDense:
    """Lava's ``DelayDense`` over a batch: weights ``w (O, I)``, delays ``d (O, I)`` (0..62), exponent.

    State: a ring ``(S, B, O)`` (integer-valued float64) of ``S = max_delay + 1`` slots and the slot sent next.
    A step is :meth:`pop` (what Lava's ``a_buff[:, 0]`` sends, computed from earlier inputs; then
    Lava's roll) and :meth:`push` (this step's input, delay ``k`` landing ``k`` slots ahead).
    """

    def __init__(self, w: np.ndarray, delay: np.ndarray, exp: int) -> None:
        self.delays = [int(k) for k in np.unique(delay)]
        self.exp = exp
        self.slots = int(delay.max()) + 1 if delay.size else 1
        o = w.shape[0]
        stacked = np.concatenate([np.where(delay == k, w, 0) for k in self.delays], axis=0)  # (K*O, I)
        self.kernel = DenseKernel(stacked)
        self.out = o

    def initial(self, batch: int) -> np.ndarray:
        return np.zeros((self.slots, batch, self.out), dtype=np.float64)

    def pop(self, ring: np.ndarray, head: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(a_out, ring, head)``: what the synapse sends this step; the ring moves one slot on."""
        a_out = ring[head]
        ring = ring.copy()
        ring[head] = 0
        return a_out, ring, (head + 1) % self.slots

    def push(self, ring: np.ndarray, head: int, x: np.ndarray, graded: bool) -> np.ndarray:
        """``ring`` with this step's input ``x (B, ...)`` added: delay ``k`` ``k`` slots after ``head``."""
        acc = shift(self.kernel(x.reshape(x.shape[0], -1), graded), self.exp)  # (B, K*O)
        acc = acc.reshape(x.shape[0], len(self.delays), self.out)
        for j, k in enumerate(self.delays):
            ring[(head + k) % self.slots] += acc[:, j]
        return ring


class ConvKernel:
    """Lava's fixed-point Conv of one block: ``x (B, C, H, W)`` -> ``(B, O, Ho, Wo)`` integer-valued
    floats, 24-bit wrapped."""

    def __init__(self, layer: NetxLayer) -> None:
        self.layer = layer
        w = layer.weight.astype(np.int64)
        self.bound = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max())
        self._w: dict[Any, Any] = {}

    def _weight(self, dtype: Any) -> Any:
        if dtype not in self._w:
            import torch

            self._w[dtype] = torch.from_numpy(self.layer.weight.astype(dtype))
        return self._w[dtype]

    def __call__(self, x: np.ndarray, graded: bool, dtype: Any = None) -> np.ndarray:
        """``dtype``: force one (None: :func:`exact_dtype`); ``graded``: ``x`` holds payloads, not 0/1."""
        layer = self.layer
        dtype = dtype or exact_dtype(self.bound, _max_in(x, graded))
        if dtype is np.int64:
            acc = _im2col_conv(x.astype(np.int64), layer).astype(np.float64)
        else:
            import torch
            import torch.nn.functional as F

            # neither tensor requires grad, so no autograd graph is recorded (no no_grad() needed)
            out = F.conv2d(torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)), self._weight(dtype),
                           stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
            acc = out.numpy()
            np.rint(acc, out=acc)
        if self.bound * _max_in(x, graded) >= (1 << (UV_BITS - 1)):
            acc = signed_wrap(acc, UV_BITS)
        return acc


def _im2col_conv(x: np.ndarray, layer: NetxLayer) -> np.ndarray:
    """Exact int64 cross-correlation by im2col (the fallback beyond float64's exact range)."""
    b, c, h, w = x.shape
    o, _, kh, kw = layer.weight.shape
    (sy, sx), (py, px), (dy, dx) = layer.stride, layer.padding, layer.dilation
    _, ho, wo = layer.out_shape
    xp = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px))) if (py or px) else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (dy * (kh - 1) + 1, dx * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, :(ho - 1) * sy + 1:sy, :(wo - 1) * sx + 1:sx, ::dy, ::dx]  # (B, C, Ho, Wo, kh, kw)
    g = layer.groups
    cols = win.reshape(b, g, c // g, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, b * ho * wo, -1)
    wmat = np.stack([layer.weight[k * (o // g):(k + 1) * (o // g)].reshape(o // g, -1).T
                     for k in range(g)]).astype(np.int64)
    acc = np.matmul(cols, wmat).reshape(g, b, ho, wo, o // g)
    return acc.transpose(1, 0, 4, 2, 3).reshape(b, o, ho, wo)


def feed_forward(layer: NetxLayer) -> DenseKernel | DelayedDense | ConvKernel:
    """The feed-forward synapse of a synaptic block."""
    if layer.kind != DENSE:
        return ConvKernel(layer)
    if layer.delay is not None:
        return DelayedDense(layer.weight, layer.delay, layer.weight_exp)
    return DenseKernel(layer.weight)


def recurrent(layer: NetxLayer) -> DenseKernel | DelayedDense | None:
    """The recurrent synapse of a dense_rec block (None for others)."""
    if layer.weight_rec is None:
        return None
    if layer.delay_rec is not None:
        return DelayedDense(layer.weight_rec, layer.delay_rec, layer.weight_exp)
    return DenseKernel(layer.weight_rec)
