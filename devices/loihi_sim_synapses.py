"""loihi-sim's synapses: Lava's fixed-point Dense, DelayDense and Conv, as batched BLAS kernels.

* **Dense** (``lava.proc.dense.models.PyDenseModelBitAcc``): ``a = (W s) >> -weight_exp`` with the
  effective weights of :func:`stdl_edge.formats.netx.netx_dense_weights`.
* **DelayDense** (``PyDelayDenseModelBitAcc``, what netx builds for a dense layer with ``delay``):
  per delay ``k`` the partial sum ``a_k = (W_k s) >> -weight_exp`` (shifted per delay, as Lava
  does) lands ``k`` steps later in a ring of ``max_delay + 1`` slots (Lava's ``a_buff`` columns).
* **Conv** (``lava.proc.conv.models.PyConvModelFixed``): cross-correlation with the file's kernel
  (PyTorch layout; netx flips it and Lava convolves), wrapped to 24-bit signed.

Exactness: every kernel works on integers held in floats. :func:`exact_dtype` is where the bound is
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
    """Two's-complement wrap of int64 ``x`` to ``bits`` signed bits."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def shift(a: np.ndarray, exp: int) -> np.ndarray:
    """Lava's ``left_shift(a, exp)`` if ``exp > 0`` else ``right_shift(a, -exp)`` (floor)."""
    return a << exp if exp > 0 else a >> (-exp)


def _max_in(x: np.ndarray, graded: bool) -> float:
    return float(np.abs(x).max()) if graded and x.size else 1.0


class DenseKernel:
    """``x (B, I)`` -> integer ``W x`` ``(B, O)`` (before the exponent); ``w (O, I)`` int64."""

    def __init__(self, w: np.ndarray) -> None:
        self.w64 = np.ascontiguousarray(np.asarray(w, dtype=np.int64).T)  # (I, O)
        self.bound = float(np.abs(self.w64).sum(axis=0).max()) if self.w64.size else 0.0
        self._w: dict[Any, np.ndarray] = {np.int64: self.w64}

    def __call__(self, x: np.ndarray, graded: bool, dtype: Any = None) -> np.ndarray:
        """``dtype``: force one (None: :func:`exact_dtype`); ``graded``: ``x`` holds payloads, not 0/1."""
        dtype = dtype or exact_dtype(self.bound, _max_in(x, graded))
        if dtype not in self._w:
            self._w[dtype] = self.w64.astype(dtype)
        acc = x.astype(dtype, copy=False) @ self._w[dtype]
        return acc.astype(np.int64) if dtype is np.int64 else np.rint(acc).astype(np.int64)


class DelayedDense:
    """Lava's ``DelayDense`` over a batch: weights ``w (O, I)``, delays ``d (O, I)`` (0..62), exponent.

    State: a ring ``(S, B, O)`` int64 of ``S = max_delay + 1`` slots and the slot sent next.
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
        return np.zeros((self.slots, batch, self.out), dtype=np.int64)

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
    """Lava's fixed-point Conv of one block: ``x (B, C, H, W)`` -> ``(B, O, Ho, Wo)`` int64, 24-bit wrapped."""

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
            acc = _im2col_conv(x.astype(np.int64), layer)
        else:
            import torch
            import torch.nn.functional as F

            with torch.no_grad():
                out = F.conv2d(torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)), self._weight(dtype),
                               stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                               groups=layer.groups)
            acc = np.rint(out.numpy()).astype(np.int64)
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
