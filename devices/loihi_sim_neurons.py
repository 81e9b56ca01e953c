"""loihi-sim's neuron models: Lava's fixed-point CUBA LIF and sigma-delta (SDNN) dynamics.

Pure step functions on explicit integer state, vectorised over any leading shape:

* **CUBA** (``lava.proc.lif.models.PyLifModelBitAcc``; netx maps ``iDecay -> du + 1``,
  ``vDecay -> dv``, ``vThMant -> vth``, ``bias -> bias_mant`` with ``bias_exp = 6``), integers::

      u = sign(u*(4096 - iDecay)) * (|u*(4096 - iDecay)| >> 12) + (a << 6)   # toward zero
      u wraps once into 24-bit signed (Lava's two np.where)
      v = sign(v*(4096 - vDecay)) * (|v*(4096 - vDecay)| >> 12) + u + (bias << 6)
      v saturates to [-(2**23 - 1), 2**23 - 1]
      s = v > (vThMant << 6);  v[s] = 0

* **Delta** (``lava.proc.sdn.models.PyDeltaModelFixed``, an SDNN input layer), int32 like Lava::

      a = a_in << 12;  delta = a - act + residue
      s = delta where |delta| >= vThMant << 12 else 0;  residue = delta - s;  act = a
      out = s >> 6                                         # graded spike

* **SigmaDelta** (``PySigmaDeltaModelFixed``, ReLU, no cumulative error, as netx builds it)::

      sigma += a_in;  act' = max(sigma + (bias << 12), 0);  delta = act' - act + residue
      s = delta where |delta| >= vThMant << 12 else 0;  residue = delta - s;  act = act'
      out = s >> 6

* **Sigma** (``PySigmaModelFixed``, an SDNN ``sigma_output`` layer): ``sigma += a_in; out = sigma``.

State names are Lava's Var names (``u, v``; ``sigma, act, residue``), so a recording of either
simulator has the same keys.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np

from stdl_edge import jit
from stdl_edge.formats.netx import CUBA_MODEL, DELTA, NEURON_STATES, SIGMA, SIGMA_DELTA, SPIKE_EXP, STATE_EXP, \
    NetxNeuron
from stdl_edge.jit import compile_kernel
from stdl_edge.loihi import ACT_SHIFT, BIAS_EXP, DECAY_UNITY, MAX_UV, VTH_SHIFT

from .loihi_sim_synapses import FLOAT32_EXACT

#: the dtype each model's state is kept in: CUBA as integer-valued float64 (exact, see
#: :func:`cuba_fixed_step`), sigma-delta in int32, as Lava's models (which wrap there)
STATE_DTYPE = {CUBA_MODEL: np.float64, DELTA: np.int32, SIGMA: np.int32, SIGMA_DELTA: np.int32}
_SDNN_SHIFT = SPIKE_EXP + STATE_EXP


def decay_toward_zero(x: np.ndarray, decay: int) -> np.ndarray:
    """``sign(x * (4096 - decay)) * (|x * (4096 - decay)| >> 12)``: Lava's 12-bit decay.

    Computed as ``trunc(x * ((4096 - decay) / 4096))`` in float64, which is exact: the factor is a
    binary fraction and ``|x * (4096 - decay)| < 2**37`` for 24-bit states, far inside float64's
    53 bits. Returns the dtype of ``x`` (int64 in, int64 out; the simulator keeps float64 states).

    >>> decay_toward_zero(np.array([5, -5, 4095]), 2048)
    array([   2,   -2, 2047])
    """
    x = np.asarray(x)
    keep = DECAY_UNITY - int(decay)
    if keep == 0:
        return np.zeros(x.shape, dtype=x.dtype)
    if keep == DECAY_UNITY:
        return x.copy()
    out = np.multiply(x, keep / DECAY_UNITY, dtype=np.float64)
    np.trunc(out, out=out)
    return out if x.dtype == np.float64 else out.astype(x.dtype)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current: one subtraction/addition of ``2**24`` (exactly as
    ``AbstractPyLifModelFixed.subthr_dynamics``: ``> 2**23`` and ``<= -2**23``)."""
    if u.size == 0 or (u.max() <= MAX_UV and u.min() > -MAX_UV):
        return u  # nothing to wrap (the common case)
    w = np.where(u > MAX_UV, u - 2 * MAX_UV, u)
    return np.where(w <= -MAX_UV, u + 2 * MAX_UV, w)


def cuba_fixed_step(a_in: np.ndarray | int, u: np.ndarray, v: np.ndarray, i_decay: int, v_decay: int,
                    bias: np.ndarray | int, vth: int, check_u: bool = True, check_v: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's bit-accurate CUBA LIF; returns ``(s, u, v)`` (new arrays, dtype of ``u``).

    ``a_in``: synaptic input (integer, before the 6-bit shift); ``i_decay``/``v_decay``:
    the netx ``iDecay``/``vDecay`` (effective 12-bit decays); ``bias``: ``bias_mant``;
    ``vth``: ``vThMant``. Spikes are ``v > vth << 6`` (strict), then ``v = 0`` where spiked.
    States may be int64 or integer-valued float64 (what the simulator keeps: every value here
    stays below ``2**37``, so float64 is exact and needs no conversions). ``check_u``/``check_v``
    False skip the wrap / saturation tests where :func:`cuba_needs_checks` proves they cannot fire.

    >>> s, u, v = cuba_fixed_step(np.array([10]), np.array([0]), np.array([0]), 4096, 2048, 0, 10)
    >>> int(u[0]), int(v[0]), int(s[0])   # u = 10 << 6 = 640 = v; 640 > 640 is false
    (640, 640, 0)
    """
    has_input = bool(np.ndim(a_in) or a_in)
    if i_decay == DECAY_UNITY and has_input and u.dtype == np.float64:  # u forgets: u = a_in << 6, one pass
        u_new = np.multiply(a_in, float(1 << ACT_SHIFT), dtype=np.float64)
    else:
        u_new = decay_toward_zero(u, i_decay)
        if has_input:
            u_new += np.asarray(a_in, dtype=u_new.dtype) * (1 << ACT_SHIFT)
    if check_u:
        u_new = wrap_current(u_new)
    v_new = decay_toward_zero(v, v_decay)
    v_new += u_new
    if np.ndim(bias) or bias:
        v_new += np.asarray(bias, dtype=v_new.dtype) * (1 << BIAS_EXP)
    if check_v and v_new.size and (v_new.max() >= MAX_UV or v_new.min() <= -MAX_UV):
        v_new = np.clip(v_new, -MAX_UV + 1, MAX_UV - 1)
    s = v_new > (int(vth) << VTH_SHIFT)
    np.copyto(v_new, 0, where=s)
    return s, u_new, v_new


def cuba_needs_checks(i_decay: int, v_decay: int, a_max: float, bias_max: float) -> tuple[bool, bool]:
    """Whether the current can wrap / the voltage saturate, given ``|a_in| <= a_max`` and
    ``|bias_mant| <= bias_max``: ``(check_u, check_v)``. With decays the states are bounded by
    geometric sums (``|trunc0(x * keep / 4096)| <= |x| * keep / 4096``)::

        |u| <= 64 a_max * 4096 / iDecay          (iDecay = 0: unbounded)
        |v| <= (|u| + 64 bias_max) * 4096 / vDecay

    >>> cuba_needs_checks(4096, 2048, 255 * 18, 0), cuba_needs_checks(0, 2048, 1, 0)
    ((False, False), (True, True))
    """
    def bound(x: float, decay: int) -> float:
        return math.inf if decay == 0 else x * DECAY_UNITY / decay

    u_max = bound(float(a_max) * (1 << ACT_SHIFT), i_decay)
    v_max = bound(u_max + float(bias_max) * (1 << BIAS_EXP), v_decay)
    return u_max > MAX_UV - 1, v_max > MAX_UV - 2


def _cuba_chunk_loop(a_first: np.ndarray, a_rest: np.ndarray, u: np.ndarray, v: np.ndarray, bias: np.ndarray,
                     keep_u: float, keep_v: float, vth: float, check_u: bool, check_v: bool, resets: np.ndarray,
                     s: np.ndarray, u_seq: np.ndarray, v_seq: np.ndarray, counts: np.ndarray
                     ) -> None:  # pragma: no cover - numba
    """:func:`cuba_fixed_step` over ``C`` steps, element by element (the compiled body of
    :func:`cuba_fixed_chunk`): ``a_first (B, N)`` is step 0's input, ``a_rest (C - 1, B, N)`` the
    others'; ``u, v (B, N)`` float64 are updated in place; ``s (C, B, N)`` bool gets the spikes and
    ``u_seq, v_seq`` (``(C, B, N)``, or ``(0, B, N)``: not kept) the states after each step;
    ``resets[t]`` zeroes ``u, v`` before step ``t``; ``counts (N,)`` int64 gets each neuron's spikes
    added (over steps and streams: the next synapse's synaptic-operation tally). ``keep_*`` are
    ``(4096 - decay) / 4096``, ``vth`` is ``vThMant << 6``: the same float64 products and
    truncations as the numpy step, so equal. A check that is off gets infinite bounds, so the
    inner loop has no branch and vectorises."""
    steps, batch, n = s.shape
    top = float(MAX_UV) if check_u else np.inf
    wrap = float(2 * MAX_UV)
    lo, hi = (1.0 - MAX_UV, MAX_UV - 1.0) if check_v else (-np.inf, np.inf)
    act, bscale = float(1 << ACT_SHIFT), float(1 << BIAS_EXP)
    for t in range(steps):
        if resets[t]:
            u[:] = 0.0
            v[:] = 0.0
        a = a_first if t == 0 else a_rest[t - 1]
        for b in range(batch):
            ub, vb, ab, sb = u[b], v[b], a[b], s[t, b]
            for i in range(n):
                uu = np.trunc(ub[i] * keep_u) + ab[i] * act
                uu = uu - wrap if uu > top else (uu + wrap if uu <= -top else uu)  # Lava's 24-bit wrap
                vv = np.trunc(vb[i] * keep_v) + uu + bias[i] * bscale
                vv = min(max(vv, lo), hi)  # saturation
                fired = vv > vth
                sb[i] = fired
                counts[i] += fired
                ub[i] = uu
                vb[i] = 0.0 if fired else vv
        if u_seq.shape[0]:
            u_seq[t] = u
            v_seq[t] = v


@lru_cache(maxsize=None)
def _cuba_chunk_kernel() -> Callable[..., None] | None:
    return compile_kernel(_cuba_chunk_loop)


def _same_float(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a, b`` (integer-valued floats) in one float dtype, without a rounding: ``a`` (one step)
    goes to ``b``'s float32 when it fits 24 bits, otherwise both go to float64."""
    if a.dtype == b.dtype and a.dtype in (np.float32, np.float64):
        return a, b
    if b.dtype == np.float32 and (a.size == 0 or float(np.abs(a).max()) < FLOAT32_EXACT):
        return a.astype(np.float32), b
    return a.astype(np.float64), b.astype(np.float64)


def cuba_fixed_chunk(a_first: np.ndarray, a_rest: np.ndarray, u: np.ndarray, v: np.ndarray, i_decay: int,
                     v_decay: int, bias: np.ndarray | int, vth: int, checks: tuple[bool, bool],
                     resets: np.ndarray, keep_states: bool, compiled: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """``C`` steps of :func:`cuba_fixed_step` at once: ``(s, u, v, u_seq, v_seq, counts)``.

    ``a_first (B, *shape)``: step 0's synaptic input; ``a_rest (C - 1, B, *shape)``: the others'
    (integer-valued floats); ``u, v (B, *shape)`` float64 (not mutated); ``bias``: ``bias_mant``
    per neuron ``(*shape)`` or 0; ``checks``: :func:`cuba_needs_checks`; ``resets (C,)`` bool: zero
    ``u, v`` before that step (netx's ``LIFReset``). Returns spikes ``(C, B, *shape)`` bool, the
    states after the last step, with ``keep_states`` the states after each step ``(C, B, *shape)``
    (else None), and each neuron's spike count over the chunk's steps and streams ``(N,)`` int64.
    Compiled with numba when it is available and the chunk has at least
    :data:`stdl_edge.jit.MIN_NEURON_STEPS` updates (``compiled=None``; ``True``/``False`` force
    either path), which makes one fused pass over the layer a step instead of seven array
    passes: the same float64 operations in the same order, so bit for bit the numpy loop's
    result
    (``tests/test_loihi_sim_neurons.py`` compares them on random chunks with wraps, saturation
    and resets).

    >>> a = np.array([[10.0, 30.0]]); rest = np.array([[[10.0, 0.0]]])
    >>> s, u, v, _, _, counts = cuba_fixed_chunk(a, rest, np.zeros((1, 2)), np.zeros((1, 2)), 4096, 2048, 0, 10,
    ...                                  (True, True), np.zeros(2, bool), False)
    >>> s[:, 0].tolist(), v[0].tolist(), counts.tolist()  # 640 > 640 is false; 1920 fires; then 320 + 640
    ([[False, True], [True, False]], [0.0, 0.0], [1, 1])
    """
    steps = 1 + a_rest.shape[0]
    shape = u.shape
    big = steps * u.size >= jit.MIN_NEURON_STEPS
    kernel = _cuba_chunk_kernel() if compiled or (compiled is None and big) else None
    if kernel is not None:
        m = int(np.prod(shape[1:]))
        b = shape[0]
        u2 = np.array(u, dtype=np.float64).reshape(b, m)
        v2 = np.array(v, dtype=np.float64).reshape(b, m)
        bias_vec = np.broadcast_to(np.asarray(bias, dtype=np.float64), shape[1:]).reshape(m)
        a_first, a_rest = _same_float(np.asarray(a_first), np.asarray(a_rest))
        s = np.empty((steps, b, m), dtype=bool)
        kept = (steps if keep_states else 0, b, m)
        u_seq, v_seq = np.empty(kept), np.empty(kept)
        counts = np.zeros(m, dtype=np.int64)
        kernel(np.ascontiguousarray(a_first).reshape(b, m), np.ascontiguousarray(a_rest).reshape(steps - 1, b, m),
               u2, v2, np.ascontiguousarray(bias_vec), (DECAY_UNITY - i_decay) / DECAY_UNITY,
               (DECAY_UNITY - v_decay) / DECAY_UNITY, float(int(vth) << VTH_SHIFT), bool(checks[0]),
               bool(checks[1]), np.asarray(resets, dtype=bool), s, u_seq, v_seq, counts)
        full = (steps, *shape)
        return (s.reshape(full), u2.reshape(shape), v2.reshape(shape),
                u_seq.reshape(full) if keep_states else None, v_seq.reshape(full) if keep_states else None, counts)
    outs, us, vs = [], [], []
    for t in range(steps):
        if resets[t]:
            u, v = np.zeros_like(u), np.zeros_like(v)
        s, u, v = cuba_fixed_step(a_first if t == 0 else a_rest[t - 1], u, v, i_decay, v_decay, bias, vth, *checks)
        outs.append(s)
        if keep_states:
            us.append(u)
            vs.append(v)
    s = np.stack(outs)
    counts = s.reshape(steps * shape[0], -1).sum(axis=0, dtype=np.int64)
    return s, u, v, np.stack(us) if keep_states else None, np.stack(vs) if keep_states else None, counts


def _delta_encode(act_new: np.ndarray, act: np.ndarray, residue: np.ndarray, vth: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(s >> 6, residue)`` of ``delta = act_new - act + residue`` (Lava's ``delta_dynamics``), int32."""
    delta = act_new - act + residue
    s = np.where(np.abs(delta) >= np.int32(vth << _SDNN_SHIFT), delta, np.int32(0))
    return (s >> STATE_EXP).astype(np.int32), (delta - s).astype(np.int32)


def neuron_step(neuron: NetxNeuron, a_in: np.ndarray | int, state: dict[str, np.ndarray],
                bias: np.ndarray | int, checks: tuple[bool, bool] = (True, True)
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One step of ``neuron``'s model: ``(out, new_state)``; ``out`` is bool spikes (CUBA) or
    int32 graded spikes (SDNN); ``state`` holds ``NEURON_STATES[neuron.model]`` (not mutated);
    ``checks``: CUBA's ``(check_u, check_v)`` (:func:`cuba_needs_checks`).

    >>> from stdl_edge.formats.netx import NetxNeuron, SIGMA_DELTA
    >>> n = NetxNeuron(0, 0, vth=1, type="SDNN", model=SIGMA_DELTA)
    >>> z = np.zeros(2, np.int32)
    >>> out, st = neuron_step(n, np.array([8192, -100], np.int32), {"sigma": z, "act": z, "residue": z}, 0)
    >>> out.tolist(), st["act"].tolist()      # 8192 >= 1 << 12 spikes 8192 >> 6; ReLU zeroes -100
    ([128, 0], [8192, 0])
    """
    model = neuron.model
    if model == CUBA_MODEL:
        s, u, v = cuba_fixed_step(a_in, state["u"], state["v"], neuron.i_decay, neuron.v_decay, bias, neuron.vth,
                                  *checks)
        return s, {"u": u, "v": v}
    a = np.asarray(a_in).astype(np.int32)  # Lava's int32 ports
    if model == DELTA:
        act_new = np.broadcast_to(a << np.int32(_SDNN_SHIFT), state["act"].shape)
        out, residue = _delta_encode(act_new, state["act"], state["residue"], neuron.vth)
        return out, {"act": act_new.copy(), "residue": residue}
    sigma = (state["sigma"] + a).astype(np.int32)
    if model == SIGMA:
        return sigma, {"sigma": sigma}
    if model != SIGMA_DELTA:
        raise ValueError(f"loihi-sim: unknown neuron model {model!r}")
    act_new = np.maximum(sigma + (np.asarray(bias, dtype=np.int32) << np.int32(_SDNN_SHIFT)), 0).astype(np.int32)
    out, residue = _delta_encode(act_new, state["act"], state["residue"], neuron.vth)
    return out, {"sigma": sigma, "act": act_new, "residue": residue}


def initial_state(neuron: NetxNeuron, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Zero state of ``neuron``'s model for a ``shape`` ``(B, *out_shape)`` block."""
    dtype = STATE_DTYPE[neuron.model]
    return {name: np.zeros(shape, dtype=dtype) for name in NEURON_STATES[neuron.model]}
