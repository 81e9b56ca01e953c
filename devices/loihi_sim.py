"""``loihi-sim``: a bit-accurate numpy simulator of Lava netx HDF5 networks (Loihi fixed point).

(Long file: about 440 lines: the fixed-point arithmetic, the two synapse paths and the device
that steps them are one simulator, checked bit for bit against Lava as a whole; reading the
file is :mod:`stdl_edge.formats.netx`'s job.)

It runs any network lava-dl's ``netx.hdf5.Network`` loads (our exports and lava-dl's own),
vectorised over a batch of streams, with the integer arithmetic of Lava's
``Loihi2SimCfg(select_tag='fixed_pt')`` models:

* **Dense synapse** (``lava.proc.dense.models.PyDenseModelBitAcc`` behind
  ``netx.blocks.process.Dense``): the file's integer weights go through netx's
  ``optimize_weight_bits`` (shift left by ``scale_bits``, ``weight_exp = -scale_bits``) and
  Lava's ``clip_weights`` / ``truncate_weights``; then ``a = (W s) >> -weight_exp``
  (arithmetic shift, floor). :func:`stdl_edge.formats.netx.netx_dense_weights` reproduces that
  pipeline, including its pathologies (lava-dl issue 170), so a bad file fails as in Lava.
* **Conv synapse** (``lava.proc.conv.models.PyConvModelFixed``): the file's integer kernel
  as is (netx passes no exponent), a cross-correlation in PyTorch layout (netx flips the
  kernel and Lava convolves), result wrapped to 24-bit signed.
* **Synapse latency**: every synapse sends the activation it computed on the previous
  step (``a_out.send(a_buff)`` before it receives), so each dense/conv layer adds one
  step: :attr:`LoihiSim.latency` is the number of synaptic layers.
* **CUBA neuron** (``lava.proc.lif.models.PyLifModelBitAcc``, netx maps ``iDecay -> du + 1``,
  ``vDecay -> dv``, ``vThMant -> vth``, ``bias -> bias_mant`` with ``bias_exp = 6``)::

      u = sign(u*(4096 - iDecay)) * (|u*(4096 - iDecay)| >> 12) + (a << 6)   # toward zero
      u wraps once into 24-bit signed (Lava's two np.where)
      v = sign(v*(4096 - vDecay)) * (|v*(4096 - vDecay)| >> 12) + u + (bias << 6)
      v saturates to [-(2**23 - 1), 2**23 - 1]
      s = v > (vThMant << 6);  v[s] = 0

  netx ignores ``refDelay`` and ``gradedSpike`` (Lava's LIF has no refractory period and
  emits unary spikes; ``messageBits`` only widens the port), and so does this simulator.
  Graded payloads enter at the input: with ``input_message_bits > 0`` the frame's integer
  values multiply the first synapse's weights; with 0 (netx default) any non-zero is a spike.

As a device (``open_device('loihi-sim', ...)``) it runs netx's staggered reset aligned to the
sample (block ``k`` zeroes ``u, v`` once, at step ``k + 1``, when the first input reaches it;
Lava: ``Network(reset_interval=R, reset_offset=1)``), so the bias-only steps of the pipeline
fill do not perturb the readout; :meth:`LoihiSim.run` is the plain ``Network`` by default.

States are int64 arrays in the model's layout ``(B, C, H, W)`` / ``(B, N)``; Lava keeps
``(x, y, c)`` (transpose to compare). Layer names are ``layer<k>``, ``k`` indexing the
blocks of ``netx.hdf5.Network.layers`` (input-with-neuron, dense, conv; a neuron-less input
and flatten make no block). The readout is the last block's voltage, in float units
``v / (64 * scale)`` with ``scale`` the layer's weight scale recorded by our exporter (64,
lava-dl's ``w_scale``, for other files).

The file is read by :func:`stdl_edge.formats.netx.read_netx` (the one netx parser, shared with
the ``lava`` device and the exporter); this module holds only the simulation: the fixed-point
maths, the synapses (dense matmul; conv as event scatter or im2col) and the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.artifact import StreamInfo
from stdl_edge.formats.netx import ALIGNED_INTERVAL, DENSE, INPUT, NetxLayer, NetxNetwork, read_netx, resolve_netx
from stdl_edge.loihi import ACT_SHIFT, BIAS_EXP, DECAY_SHIFT, DECAY_UNITY, MAX_UV, UV_BITS, VTH_SHIFT
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats

#: an event's scatter costs about this many dense multiply-adds (BLAS, batch <= 4); picks the conv path
EVENT_COST = 4


# ----------------------------------------------------------------------------- fixed-point maths
def decay_toward_zero(x: np.ndarray, decay: int) -> np.ndarray:
    """``sign(x * (4096 - decay)) * (|x * (4096 - decay)| >> 12)``: Lava's 12-bit decay, int64.

    >>> decay_toward_zero(np.array([5, -5, 4095]), 2048)
    array([   2,   -2, 2047])
    """
    keep = DECAY_UNITY - int(decay)
    if keep == 0:
        return np.zeros(np.shape(x), dtype=np.int64)
    if keep == DECAY_UNITY:
        return np.asarray(x, dtype=np.int64).copy()
    prod = np.asarray(x, dtype=np.int64) * keep
    mag = np.abs(prod) >> DECAY_SHIFT
    return np.where(prod < 0, -mag, mag)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current: one subtraction/addition of ``2**24`` (exactly as
    ``AbstractPyLifModelFixed.subthr_dynamics``: ``> 2**23`` and ``<= -2**23``)."""
    if u.size == 0 or (u.max() <= MAX_UV and u.min() > -MAX_UV):
        return u  # nothing to wrap (the common case)
    w = np.where(u > MAX_UV, u - 2 * MAX_UV, u)
    return np.where(w <= -MAX_UV, u + 2 * MAX_UV, w)


def cuba_fixed_step(a_in: np.ndarray, u: np.ndarray, v: np.ndarray, i_decay: int, v_decay: int,
                    bias: np.ndarray | int, vth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's bit-accurate CUBA LIF; all int64, returns ``(s, u, v)`` (new arrays).

    ``a_in``: synaptic input (integer, before the 6-bit shift); ``i_decay``/``v_decay``:
    the netx ``iDecay``/``vDecay`` (effective 12-bit decays); ``bias``: ``bias_mant``;
    ``vth``: ``vThMant``. Spikes are ``v > vth << 6`` (strict), then ``v = 0`` where spiked.

    >>> s, u, v = cuba_fixed_step(np.array([10]), np.array([0]), np.array([0]), 4096, 2048, 0, 10)
    >>> int(u[0]), int(v[0]), int(s[0])   # u = 10 << 6 = 640 = v; 640 > 640 is false
    (640, 640, 0)
    """
    u_new = decay_toward_zero(u, i_decay) + (np.asarray(a_in, dtype=np.int64) << ACT_SHIFT)
    u_new = wrap_current(u_new)
    v_new = decay_toward_zero(v, v_decay) + u_new + (np.asarray(bias, dtype=np.int64) << BIAS_EXP)
    if v_new.size and (v_new.max() >= MAX_UV or v_new.min() <= -MAX_UV):
        v_new = np.clip(v_new, -MAX_UV + 1, MAX_UV - 1)
    s = v_new > (int(vth) << VTH_SHIFT)
    v_new = np.where(s, 0, v_new)
    return s, u_new, v_new


def _shift(a: np.ndarray, exp: int) -> np.ndarray:
    return a << exp if exp > 0 else a >> (-exp)


# ----------------------------------------------------------------------------- the network
@dataclass(frozen=True, eq=False)
class _Kernel:
    """A synaptic block's weights prepared for numpy.

    wmat: dense ``(I, O)``; conv per group ``(g, I/g*kh*kw, O/g)`` for im2col, in ``dtype``
        (float32 where every sum of integers stays exact, below ``2**24``, else float64).
    fan_idx, fan_w: conv only, per input element the flat output indices and weights it reaches
        ``(C*H*W, F)`` (the event-driven scatter).
    """

    wmat: np.ndarray
    dtype: Any
    fan_idx: np.ndarray | None = None
    fan_w: np.ndarray | None = None


def _kernel(layer: NetxLayer) -> _Kernel:
    w = layer.weight
    max_in = 1 if layer.input_message_bits == 0 else (1 << max(layer.input_message_bits, 1))
    bound = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max()) * max_in
    dtype = np.float32 if bound < 2 ** 24 else np.float64
    if layer.kind == DENSE:
        return _Kernel(np.ascontiguousarray(w.T.astype(dtype)), dtype)
    o, g = w.shape[0], layer.groups
    wmat = np.stack([w[k * (o // g):(k + 1) * (o // g)].reshape(o // g, -1).T for k in range(g)]).astype(dtype)
    return _Kernel(wmat, dtype, *_conv_fanout_table(layer))


class LoihiNet:
    """A parsed netx network (:class:`~stdl_edge.formats.netx.NetxNetwork`) prepared for simulation.

    ``layers`` are the network's :class:`~stdl_edge.formats.netx.NetxLayer` blocks; each synaptic
    block gets its numpy kernel once, here.
    """

    def __init__(self, spec: NetxNetwork) -> None:
        self.spec = spec
        self.layers = spec.layers
        self.input_shape = spec.input_shape
        self._kernels = [_kernel(layer) if layer.synaptic else None for layer in spec.layers]

    @classmethod
    def from_netx(cls, path: str | Path, input_message_bits: int | None = None, dt_us: int | None = None) -> LoihiNet:
        """Read ``path`` (:func:`~stdl_edge.formats.netx.read_netx`) and prepare it."""
        return cls(read_netx(path, input_message_bits=input_message_bits, dt_us=dt_us))

    @property
    def latency(self) -> int:
        return self.spec.latency

    def synapse(self, layer: NetxLayer, x: np.ndarray, method: str | None = None) -> np.ndarray:
        """Integer synaptic output ``(B, *out_shape)`` int64 of input ``x`` (B, *in_shape).

        Conv layers pick the event-driven scatter (sparse input) or im2col + matmul (dense
        input) by cost; ``method='event'`` or ``'dense'`` forces one (both are exact)."""
        b = x.shape[0]
        kernel = self._kernels[layer.block]
        if layer.kind == DENSE:
            xm = x.reshape(b, -1).astype(kernel.dtype, copy=False)
            acc = np.rint(xm @ kernel.wmat).astype(np.int64)
            return _shift(acc, layer.weight_exp)
        o, ho, wo = layer.out_shape
        flat = x.reshape(b, -1)
        nz_b, nz_i = np.nonzero(flat)
        fan = kernel.fan_idx.shape[1]
        if method is None:
            cost = EVENT_COST if b <= 4 else 4 * EVENT_COST  # BLAS gets more efficient with the batch
            method = "event" if len(nz_i) * fan * cost < b * ho * wo * kernel.wmat.shape[1] * o else "dense"
        if method == "event":
            # event-driven (Loihi's own way): scatter each input event's fan-out
            idx = kernel.fan_idx[nz_i] + (nz_b * (o * ho * wo))[:, None]
            wts = kernel.fan_w[nz_i]
            if layer.input_message_bits > 0:
                wts = wts * flat[nz_b, nz_i][:, None]
            acc = np.bincount(idx.ravel(), weights=wts.ravel(), minlength=b * o * ho * wo)
            return _signed_wrap(np.rint(acc).astype(np.int64).reshape(b, o, ho, wo), UV_BITS)
        cols = _im2col(x.astype(kernel.dtype, copy=False), layer)  # (g, B*Ho*Wo, I/g*kh*kw)
        acc = np.matmul(cols, kernel.wmat)  # (g, B*Ho*Wo, O/g)
        acc = np.rint(acc).astype(np.int64).reshape(layer.groups, b, ho, wo, o // layer.groups)
        acc = acc.transpose(1, 0, 4, 2, 3).reshape(b, o, ho, wo)
        return _signed_wrap(acc, UV_BITS)


def _signed_wrap(x: np.ndarray, bits: int) -> np.ndarray:
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def _im2col(x: np.ndarray, layer: NetxLayer) -> np.ndarray:
    """``x (B, C, H, W)`` -> patches ``(groups, B*Ho*Wo, C/g*kh*kw)`` for cross-correlation."""
    b, c, h, w = x.shape
    _, _, kh, kw = layer.weight.shape
    (sy, sx), (py, px), (dy, dx) = layer.stride, layer.padding, layer.dilation
    _, ho, wo = layer.out_shape
    xp = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px))) if (py or px) else x
    ext_h, ext_w = dy * (kh - 1) + 1, dx * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (ext_h, ext_w), axis=(2, 3))
    win = win[:, :, :(ho - 1) * sy + 1:sy, :(wo - 1) * sx + 1:sx, ::dy, ::dx]  # (B, C, Ho, Wo, kh, kw)
    g = layer.groups
    win = win.reshape(b, g, c // g, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return win.reshape(g, b * ho * wo, (c // g) * kh * kw)


def _conv_fanout_table(layer: NetxLayer) -> tuple[np.ndarray, np.ndarray]:
    """Per input element, the flat output indices and weights it reaches: ``(C*H*W, F)`` each.

    Output ``(o, oy, ox)`` gets ``W[o, c % (C/g), ky, kx]`` from input ``(c, y, x)`` when
    ``y = oy * sy - py + ky * dy`` (same for x); unused slots have weight 0 (index 0).
    """
    c, h, w = layer.in_shape
    o, ho, wo = layer.out_shape
    _, ig, kh, kw = layer.weight.shape
    (sy, sx), (py, px), (dy, dx) = layer.stride, layer.padding, layer.dilation
    og = o // layer.groups
    grp = np.arange(c) // ig
    outs = grp[:, None] * og + np.arange(og)[None, :]  # (C, O/g) output channels of each input channel
    ys, xs = np.arange(h), np.arange(w)
    slots_i, slots_w, slots_ok = [], [], []
    for ky in range(kh):
        ny = ys + py - ky * dy
        oky = (ny % sy == 0) & (ny >= 0) & (ny // sy < ho)
        for kx in range(kw):
            nx = xs + px - kx * dx
            okx = (nx % sx == 0) & (nx >= 0) & (nx // sx < wo)
            ok = oky[:, None] & okx[None, :]  # (H, W)
            pos = (np.where(oky, ny // sy, 0)[:, None] * wo + np.where(okx, nx // sx, 0)[None, :])  # (H, W)
            wsel = layer.weight[outs, (np.arange(c) % ig)[:, None], ky, kx]  # (C, O/g)
            idx = outs[:, None, None, :] * (ho * wo) + pos[None, :, :, None]  # (C, H, W, O/g)
            wk = np.where(ok[None, :, :, None], wsel[:, None, None, :], 0)
            slots_i.append(np.where(ok[None, :, :, None], idx, 0))
            slots_w.append(wk)
            slots_ok.append(ok)
    ok_all = np.stack(slots_ok, axis=-1)  # (H, W, K)
    order = np.argsort(~ok_all, axis=-1, kind="stable")  # valid kernel offsets first
    keep = int(ok_all.sum(axis=-1).max())
    order = order[..., :keep]
    idx = np.stack(slots_i, axis=3)  # (C, H, W, K, O/g)
    wts = np.stack(slots_w, axis=3)
    sel = np.broadcast_to(order[None, :, :, :, None], (c, h, w, keep, og))
    idx = np.take_along_axis(idx, sel, axis=3).reshape(c * h * w, keep * og)
    wts = np.take_along_axis(wts, sel, axis=3).reshape(c * h * w, keep * og).astype(np.float64)
    return idx.astype(np.int64), wts


# ----------------------------------------------------------------------------- the device
class LoihiSim(Device):
    """Bit-accurate Loihi CUBA simulator of a netx HDF5 network, batched over streams.

    Raw integer API (for cross-checks with Lava)::

        sim = LoihiSim.from_netx("model.net")
        out = sim.run(spikes)        # spikes (T, B, *input_shape) -> dict of (T, B, ...) arrays:
                                     # 'layer<k>' spikes (int8), 'layer<k>/u', 'layer<k>/v' (int64)

    Device API: ``reset(batch)``, ``step(frame (B, C, H, W)) -> (B, classes)`` float32 readout
    (last block's voltage in float units), ``stats()``, ``recorded()`` with ``record=True``.
    """

    name = "loihi-sim"

    def __init__(self, net: LoihiNet, stream: StreamInfo | None = None, record: bool = False,
                 readout: str = "voltage", aligned: bool = True) -> None:
        if readout not in ("voltage", "spikes"):
            raise ValueError(f"loihi-sim readout={readout!r} is unknown; use 'voltage' or 'spikes'")
        #: netx's staggered reset (Network(reset_interval, reset_offset)): block k zeroes u and v
        #: when Lava's time step t (1-based) has t % interval == (offset + 1 + k) % interval.
        #: ``aligned`` (device mode) resets block k once, at step k + 1 of the sample, when the
        #: first input reaches it: the bias-only steps of the pipeline fill are discarded and the
        #: fixed-point network follows the float one from step 0 (Lava: reset_offset=1 and an
        #: interval longer than the sample).
        self.reset_interval: int | None = ALIGNED_INTERVAL if aligned else None
        self.reset_offset = 1 if aligned else 0
        self.net = net
        self.record = record
        self.readout = readout
        self.latency = net.latency
        self.input_shape = tuple(net.input_shape)
        self.num_classes = int(np.prod(net.layers[-1].out_shape))
        self.stream = stream if stream is not None else net.spec.stream
        self.artifact = net.spec.path
        self.layer_names = [layer.name for layer in net.layers]
        self._batch = 0
        self._state: list[dict[str, np.ndarray]] | None = None
        self._recorded: dict[str, np.ndarray] = {}
        n = len(net.layers)
        self._spikes = np.zeros(n, dtype=np.int64)
        self._synops = np.zeros(n, dtype=np.int64)
        self._steps = 0

    @classmethod
    def from_netx(cls, path: str | Path, record: bool = False, input_message_bits: int | None = None,
                  dt_us: int | None = None, **options: Any) -> LoihiSim:
        """Open a netx file; ``dt_us``: the time step of a file that records none (lava-dl's own)."""
        return cls(LoihiNet.from_netx(path, input_message_bits=input_message_bits, dt_us=dt_us), record=record,
                   **options)

    @classmethod
    def load(cls, artifact: Path, **options: Any) -> LoihiSim:
        """Open a ``.net`` file, or an export folder holding ``model.net`` (``RUN/export/netx``)."""
        path = resolve_netx(artifact)
        return cls.from_netx(path, **options)

    # ------------------------------------------------------------------ state
    def reset(self, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"loihi-sim: batch={batch} must be >= 1")
        self._batch = batch
        self._state = []
        for layer in self.net.layers:
            st = {"u": np.zeros((batch, *layer.out_shape), dtype=np.int64),
                  "v": np.zeros((batch, *layer.out_shape), dtype=np.int64)}
            if layer.synaptic:
                st["buf"] = np.zeros((batch, *layer.out_shape), dtype=np.int64)
            self._state.append(st)
        self._spikes[:] = 0
        self._synops[:] = 0
        self._steps = 0
        self._recorded = {}

    def set_reset(self, interval: int | None, offset: int = 0) -> None:
        """netx's ``reset_interval`` / ``reset_offset`` (None: never reset, plain ``Network``)."""
        if interval is not None and interval < 1:
            raise ValueError(f"loihi-sim: reset_interval={interval} must be >= 1 (or None)")
        self.reset_interval, self.reset_offset = interval, int(offset)

    def _input(self, frame: np.ndarray) -> np.ndarray:
        first = self.net.layers[0]
        if first.kind == INPUT or first.input_message_bits > 0:
            if not np.all(frame == np.round(frame)):
                raise ValueError("loihi-sim: graded input must be whole numbers (spike payloads)")
            return frame.astype(np.int64)
        return (frame != 0).astype(np.int64)

    def step_int(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One step on integer input ``x (B, *input_shape)``; returns ``(s, u, v)`` per layer."""
        if self._state is None:
            raise RuntimeError("loihi-sim: call reset(batch) before step()")
        out = []
        t_lava = self._steps + 1  # Lava counts time steps from 1
        for k, (layer, st) in enumerate(zip(self.net.layers, self._state)):
            if self.reset_interval is not None:
                r = self.reset_interval
                if t_lava % r == (self.reset_offset + 1 + k) % r:
                    st["u"] = np.zeros_like(st["u"])  # new arrays: earlier outputs keep their values
                    st["v"] = np.zeros_like(st["v"])
            if layer.kind == INPUT:
                w, b = layer.transform
                bias = x * w + b
                a_in = 0
            else:
                bias = layer.bias
                a_in = st["buf"]
                if x.any():
                    st["buf"] = self.net.synapse(layer, x)
                    flat = x.reshape(x.shape[0], -1)
                    self._synops[k] += int((flat * layer.fanout.reshape(1, -1)).sum()) if layer.kind == DENSE \
                        else int((x * layer.fanout[None]).sum())
                else:
                    st["buf"] = np.zeros_like(st["buf"])
            n = layer.neuron
            s, st["u"], st["v"] = cuba_fixed_step(a_in, st["u"], st["v"], n.i_decay, n.v_decay, bias, n.vth)
            self._spikes[k] += int(s.sum())
            x = s.astype(np.int64)
            out.append((s, st["u"], st["v"]))
        self._steps += 1
        return out

    def step(self, frame: np.ndarray) -> np.ndarray:
        frame = self.check_frame(frame, self._batch)
        out = self.step_int(self._input(frame))
        if self.record:
            self._recorded = {}
            for layer, (s, u, v) in zip(self.net.layers, out):
                self._recorded[layer.name] = s.astype(np.float32)
                self._recorded[f"{layer.name}/u"] = u.copy()
                self._recorded[f"{layer.name}/v"] = v.copy()
        s, _, v = out[-1]
        last = self.net.layers[-1]
        if self.readout == "spikes":
            return s.reshape(self._batch, -1).astype(np.float32)
        return (v.reshape(self._batch, -1) / last.voltage_scale).astype(np.float32)

    def run(self, spikes: np.ndarray, reset_interval: int | None = None, reset_offset: int = 0
            ) -> dict[str, np.ndarray]:
        """Integer run of ``spikes (T, B, *input_shape)`` from rest, as Lava runs
        ``netx.hdf5.Network(path, reset_interval=..., reset_offset=...)``; returns per-layer time
        series ``'layer<k>'`` (T, B, ...) int8 spikes and ``'layer<k>/u'``, ``'layer<k>/v'`` int64."""
        saved = (self.reset_interval, self.reset_offset)
        self.set_reset(reset_interval, reset_offset)
        try:
            return self._run(np.asarray(spikes))
        finally:
            self.reset_interval, self.reset_offset = saved

    def _run(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        if spikes.ndim != 2 + len(self.input_shape) or tuple(spikes.shape[2:]) != self.input_shape:
            raise ValueError(f"loihi-sim run: spikes have shape {spikes.shape}, expected (T, B, "
                             f"{', '.join(map(str, self.input_shape))})")
        steps, batch = spikes.shape[:2]
        self.reset(batch)
        series: dict[str, list[np.ndarray]] = {}
        for t in range(steps):
            out = self.step_int(self._input(spikes[t]))
            for layer, (s, u, v) in zip(self.net.layers, out):
                series.setdefault(layer.name, []).append(s.astype(np.int8))
                series.setdefault(f"{layer.name}/u", []).append(u)
                series.setdefault(f"{layer.name}/v", []).append(v)
        return {k: np.stack(v) for k, v in series.items()}

    def stats(self) -> LayerStats:
        return LayerStats(names=list(self.layer_names), spikes=self._spikes.copy(), synops=self._synops.copy(),
                          neurons=np.array([int(np.prod(layer.out_shape)) for layer in self.net.layers],
                                           dtype=np.int64),
                          steps=self._steps, batch=self._batch)

    def recorded(self) -> dict[str, np.ndarray]:
        return dict(self._recorded)


DEVICES.register("loihi-sim", LoihiSim.load, "bit-accurate Loihi fixed-point simulator of netx HDF5 (numpy)",
                 requires=("h5py",), format="netx")
