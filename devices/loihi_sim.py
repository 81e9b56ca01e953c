"""``loihi-sim``: a bit-accurate numpy simulator of Lava netx HDF5 networks (Loihi fixed point).

It runs any network lava-dl's ``netx.hdf5.Network`` loads (our exports and lava-dl's own),
vectorised over a batch of streams, with the integer arithmetic of Lava's
``Loihi2SimCfg(select_tag='fixed_pt')`` models:

* **Dense synapse** (``lava.proc.dense.models.PyDenseModelBitAcc`` behind
  ``netx.blocks.process.Dense``): the file's integer weights go through netx's
  ``optimize_weight_bits`` (shift left by ``scale_bits``, ``weight_exp = -scale_bits``) and
  Lava's ``clip_weights`` / ``truncate_weights``; then ``a = (W s) >> -weight_exp``
  (arithmetic shift, floor). :func:`netx_dense_weights` reproduces that pipeline, including
  its pathologies (lava-dl issue 170), so a bad file fails here exactly as it does in Lava.
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.artifact import StreamInfo
from stdl_edge.loihi import ACT_SHIFT, BASE_SCALE, BIAS_EXP, DECAY_SHIFT, DECAY_UNITY, MAX_UV, VTH_SHIFT
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats

SUPPORTED_NEURONS = ("CUBA", "LOIHI")
#: an event's scatter costs about this many dense multiply-adds (BLAS, batch <= 4); picks the conv path
EVENT_COST = 4
#: reset interval of the aligned device mode: longer than any sample
ALIGNED_INTERVAL = 1 << 40


class NetxError(ValueError):
    """A netx file this simulator (or netx itself) cannot run; the message names the layer."""


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


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and exponent a netx Dense synapse really uses: ``(W_eff, exp)``.

    Reproduces ``lava.lib.dl.netx.utils.optimize_weight_bits`` followed by Lava's
    ``determine_sign_mode``, ``clip_weights(num_bits=8)`` and ``truncate_weights``. The
    synapse output is ``(W_eff @ s) >> -exp`` (``<< exp`` if ``exp > 0``). For a well-formed
    matrix ``W_eff >> -exp == W``; lava-dl issue 170 (and single-sign matrices whose
    extreme is a power of two) are where it is not. An all-zero matrix makes netx divide by
    zero; that raises :class:`NetxError`.
    """
    w = np.asarray(weight).astype(np.int64)
    max_w, min_w = int(w.max()), int(w.min())
    if max_w > 254 and min_w < 0:  # netx clips and warns
        w = np.clip(w, -256, 254)
        max_w = int(w.max())
    if min_w < -256 and max_w > 0:
        w = np.clip(w, -256, 254)
        min_w = int(w.min())
    if max_w == 0 and min_w == 0:
        raise NetxError("an all-zero dense weight matrix: netx.utils.optimize_weight_bits divides by zero "
                        "(255 / max weight) and Lava cannot load it")
    if max_w < 0:
        is_signed, scale = 0, -256 / min_w
    elif min_w >= 0:
        is_signed, scale = 0, 255 / max_w
    else:
        is_signed = 1
        pos = 127 / max_w if max_w > 0 else math.inf
        scale = min(pos, -128 / min_w)
    scale_bits = int(math.floor(math.log2(scale))) + is_signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    exp = -scale_bits
    if scale_bits < 0:
        raise NetxError(f"dense weights up to {max_w} need a negative shift in netx (undefined); "
                        "keep |weight| <= 254")
    shifted = w << scale_bits
    # Lava's PyDenseModelBitAcc: sign mode of the shifted weights, clip to 8 bits, truncate
    if shifted.min() >= 0:
        mode = "exc"
    elif shifted.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    x = -shifted if mode == "inh" else shifted
    x = np.clip(x, -(1 << 8) * mixed, (1 << 8) - 1)
    t = 8 - num_weight_bits + mixed
    x = (x >> t) << t
    return (-x if mode == "inh" else x), exp


def _shift(a: np.ndarray, exp: int) -> np.ndarray:
    return a << exp if exp > 0 else a >> (-exp)


# ----------------------------------------------------------------------------- the network
@dataclass
class SimLayer:
    """One netx block: an optional synapse (dense or conv) and a CUBA neuron group."""

    name: str
    kind: str  # 'input' | 'dense' | 'conv'
    index: int  # index of the layer group in the HDF5 file
    out_shape: tuple[int, ...]  # (C, H, W) or (N,)
    in_shape: tuple[int, ...]
    i_decay: int
    v_decay: int
    vth: int
    bias: np.ndarray  # bias_mant, broadcast to out_shape
    scale: float = BASE_SCALE
    weight: np.ndarray | None = None  # dense (O, I) effective; conv (O, I/g, kh, kw)
    weight_exp: int = 0
    stride: tuple[int, int] = (1, 1)  # (y, x)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input_message_bits: int = 0
    flatten_input: bool = False
    transform: tuple[int, int] = (64, 0)  # input-with-neuron: bias_mant = weight * x + bias
    fanout: np.ndarray | None = None  # nonzero synapses leaving each input element
    _wmat: np.ndarray | None = field(default=None, repr=False)  # float weight matrix for matmul
    _wdtype: Any = field(default=np.float64, repr=False)
    _fan_idx: np.ndarray | None = field(default=None, repr=False)  # conv: (C*H*W, F) flat output indices
    _fan_w: np.ndarray | None = field(default=None, repr=False)  # conv: (C*H*W, F) weights

    @property
    def synaptic(self) -> bool:
        return self.kind in ("dense", "conv")


def _read(group: Any, key: str, default: Any = None) -> Any:
    if key not in group:
        return default
    value = group[key][()]
    return value


def _read_str(group: Any, key: str) -> str:
    value = group[key][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _pair(value: Any, default: int) -> tuple[int, int]:
    """netx stores stride/padding/dilation as a scalar or in (y, x) order (it reverses to x, y)."""
    if value is None:
        return (default, default)
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        return (int(arr[0]), int(arr[0]))
    return (int(arr[0]), int(arr[1]))


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class LoihiNet:
    """A parsed netx network: its layers and root attributes; runs on integer state arrays."""

    def __init__(self, layers: list[SimLayer], input_shape: tuple[int, ...], attrs: dict[str, Any],
                 path: Path | None = None) -> None:
        if not layers:
            raise NetxError(f"{path}: the network has no dense or conv layer")
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self.attrs = attrs
        self.path = path

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_netx(cls, path: str | Path, input_message_bits: int | None = None) -> LoihiNet:
        import h5py

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"netx file {path} does not exist")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise NetxError(f"{path} is not a readable HDF5 file ({e})") from None
        with f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            if input_message_bits is None:
                input_message_bits = int(attrs.get("input_message_bits", 0))
            if "layer" not in f:
                raise NetxError(f"{path} has no 'layer' group: it is not a netx network")
            group = f["layer"]
            order = sorted(group.keys(), key=int)
            layers: list[SimLayer] = []
            input_shape: tuple[int, ...] | None = None
            cur_shape: tuple[int, ...] | None = None
            msg_bits = input_message_bits
            flatten_next = False
            for key in order:
                g = group[key]
                i = int(key)
                where = f"{path.name}: layer/{i}"
                ltype = _read_str(g, "type")
                name = f"layer{len(layers)}"
                if ltype == "input":
                    shape = tuple(int(v) for v in np.asarray(_read(g, "shape")).reshape(-1))
                    if "neuron" in g:
                        neuron = cls._neuron(g["neuron"], where)
                        bias = np.zeros(shape, dtype=np.int64)
                        # slayer writes these as 1-element arrays; int() of one is deprecated (NumPy 1.25)
                        w = int(np.asarray(_read(g, "weight", 64)).reshape(-1)[0])
                        b = int(np.asarray(_read(g, "bias", 0)).reshape(-1)[0])
                        layers.append(SimLayer(name, "input", i, shape, shape, *neuron, bias=bias,
                                               scale=float(g.attrs.get("scale", BASE_SCALE)),
                                               transform=(w, b)))
                        msg_bits = neuron_msg_bits(g["neuron"])
                    input_shape = shape
                    cur_shape = shape
                elif ltype == "flatten":
                    flatten_next = True
                elif ltype in ("dense", "conv"):
                    if "neuron" in g:
                        neuron_g = g["neuron"]
                        neuron = cls._neuron(neuron_g, where)
                        out_bits = neuron_msg_bits(neuron_g)
                    else:  # netx's default: a non-leaky integrator that never fires
                        neuron, out_bits = (0, 4096, 1 << 17), 0
                    if ltype == "dense":
                        layer = cls._dense(g, name, i, neuron, cur_shape, flatten_next, where)
                        if input_shape is None:
                            input_shape = layer.in_shape
                    else:
                        if cur_shape is None:
                            raise NetxError(f"{where}: conv layer with no input shape before it; netx needs "
                                            "an 'input' layer with a shape (or input_shape=...)")
                        layer = cls._conv(g, name, i, neuron, cur_shape, where)
                    layer.input_message_bits = msg_bits
                    layer.scale = float(g.attrs.get("scale", BASE_SCALE))
                    flatten_next = False
                    layers.append(layer)
                    cur_shape = layer.out_shape
                    msg_bits = out_bits
                else:
                    raise NetxError(f"{where} has type {ltype!r}, which netx cannot build (netx.hdf5.Network "
                                    "supports input, flatten, dense, conv); loihi-sim runs the same subset")
        if input_shape is None:
            raise NetxError(f"{path}: cannot infer the input shape")
        net = cls(layers, input_shape, attrs, path)
        net._prepare()
        return net

    @staticmethod
    def _neuron(g: Any, where: str) -> tuple[int, int, int]:
        ntype = _read_str(g, "type")
        if ntype not in SUPPORTED_NEURONS:
            raise NetxError(f"{where}: neuron type {ntype!r} is not supported by loihi-sim (CUBA only; "
                            "SDNN/RF models need Lava)")
        i_decay = int(_read(g, "iDecay", 0))
        v_decay = int(_read(g, "vDecay", 0))
        vth = int(_read(g, "vThMant"))
        for label, val in (("iDecay", i_decay), ("vDecay", v_decay)):
            if not 0 <= val <= DECAY_UNITY:
                raise NetxError(f"{where}: neuron {label}={val} is outside 0..4096")
        return i_decay, v_decay, vth

    @staticmethod
    def _bias(g: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
        if "bias" not in g:
            return np.zeros(shape, dtype=np.int64)
        b = np.asarray(g["bias"][()]).astype(int).astype(np.int64)  # netx: .astype(int)
        if b.size == 1 and len(shape) == 1:
            return np.full(shape, int(b.reshape(-1)[0]), dtype=np.int64)
        if b.shape == shape:
            return b
        if len(shape) == 3 and b.shape == (shape[0],):  # channel-wise
            return np.broadcast_to(b[:, None, None], shape).copy()
        if len(shape) == 3 and b.shape == shape[::-1]:  # neuron-wise in Lava's (x, y, c)
            return b.transpose(2, 1, 0).copy()
        raise NetxError(f"{where}: bias of shape {b.shape} does not fit the layer shape {shape}")

    @classmethod
    def _dense(cls, g: Any, name: str, i: int, neuron: tuple[int, int, int], cur_shape: tuple[int, ...] | None,
               flatten_next: bool, where: str) -> SimLayer:
        if "delay" in g:
            raise NetxError(f"{where}: dense layer with synaptic delays is not supported by loihi-sim")
        if "weight" not in g:
            keys = ", ".join(g.keys())
            raise NetxError(f"{where}: dense layer without a real 'weight' dataset (has {keys}); complex "
                            "weights are not supported")
        shape = (int(np.prod(_read(g, "shape"))),)
        w = np.asarray(g["weight"][()]).astype(int)
        if w.ndim == 1:
            w = w.reshape(shape[0], -1)
        if w.shape[0] != shape[0]:
            raise NetxError(f"{where}: weight has {w.shape[0]} rows for {shape[0]} neurons")
        in_n = w.shape[1]
        if cur_shape is not None and int(np.prod(cur_shape)) != in_n:
            raise NetxError(f"{where}: weight expects {in_n} inputs but the layer before gives {cur_shape}")
        if cur_shape is not None and len(cur_shape) > 1 and not flatten_next:
            raise NetxError(f"{where}: dense layer after a {len(cur_shape)}-D layer without a 'flatten' "
                            "layer; netx cannot connect them")
        try:
            w_eff, exp = netx_dense_weights(w)
        except NetxError as e:
            raise NetxError(f"{where}: {e}") from None
        in_shape = tuple(cur_shape) if cur_shape is not None else (in_n,)
        return SimLayer(name, "dense", i, shape, in_shape, *neuron, bias=cls._bias(g, shape, where),
                        weight=w_eff, weight_exp=exp, flatten_input=len(in_shape) > 1)

    @classmethod
    def _conv(cls, g: Any, name: str, i: int, neuron: tuple[int, int, int], cur_shape: tuple[int, ...],
              where: str) -> SimLayer:
        if "delay" in g:
            raise NetxError(f"{where}: conv layer with synaptic delays is not supported by loihi-sim")
        if len(cur_shape) != 3:
            raise NetxError(f"{where}: conv layer after a layer of shape {cur_shape}; it needs (C, H, W)")
        w = np.asarray(g["weight"][()]).astype(int)
        w = w.reshape(w.shape[:4]).astype(np.int64)  # (O, I/g, kh, kw), PyTorch layout
        stride = _pair(_read(g, "stride"), 1)
        padding = _pair(_read(g, "padding"), 0)
        dilation = _pair(_read(g, "dilation"), 1)
        groups = int(np.asarray(_read(g, "groups", 1)).reshape(-1)[0])
        c, h, wd = cur_shape
        if c % groups or w.shape[0] % groups or w.shape[1] * groups != c:
            raise NetxError(f"{where}: kernel {w.shape} with groups={groups} does not fit {c} input channels")
        out = (w.shape[0], _conv_out(h, w.shape[2], stride[0], padding[0], dilation[0]),
               _conv_out(wd, w.shape[3], stride[1], padding[1], dilation[1]))
        shape = tuple(int(v) for v in np.asarray(_read(g, "shape")).reshape(-1))
        if shape != out:
            raise NetxError(f"{where}: conv output shape {out} (C, H, W) differs from the recorded {shape}")
        return SimLayer(name, "conv", i, out, tuple(cur_shape), *neuron, bias=cls._bias(g, out, where),
                        weight=w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def _prepare(self) -> None:
        """Weight matrices for matmul (float32 where sums stay exact, else float64) and fan-outs."""
        for layer in self.layers:
            if not layer.synaptic:
                continue
            w = layer.weight
            max_in = 1 if layer.input_message_bits == 0 else (1 << max(layer.input_message_bits, 1))
            if layer.kind == "dense":
                bound = float(np.abs(w).sum(axis=1).max()) * max_in
                layer._wdtype = np.float32 if bound < 2 ** 24 else np.float64
                layer._wmat = np.ascontiguousarray(w.T.astype(layer._wdtype))  # (I, O)
                layer.fanout = (w != 0).sum(axis=0).astype(np.int64)
            else:
                o, ig, kh, kw = w.shape
                bound = float(np.abs(w).reshape(o, -1).sum(axis=1).max()) * max_in
                layer._wdtype = np.float32 if bound < 2 ** 24 else np.float64
                g = layer.groups
                # per group: (I/g*kh*kw, O/g)
                layer._wmat = np.stack([w[k * (o // g):(k + 1) * (o // g)].reshape(o // g, -1).T
                                        for k in range(g)]).astype(layer._wdtype)
                layer._fan_idx, layer._fan_w = _conv_fanout_table(layer)
                layer.fanout = (layer._fan_w != 0).sum(axis=1).astype(np.int64).reshape(layer.in_shape)

    # ------------------------------------------------------------------ arithmetic
    @property
    def latency(self) -> int:
        return sum(1 for layer in self.layers if layer.synaptic)

    def synapse(self, layer: SimLayer, x: np.ndarray, method: str | None = None) -> np.ndarray:
        """Integer synaptic output ``(B, *out_shape)`` int64 of input ``x`` (B, *in_shape).

        Conv layers pick the event-driven scatter (sparse input) or im2col + matmul (dense
        input) by cost; ``method='event'`` or ``'dense'`` forces one (both are exact)."""
        b = x.shape[0]
        if layer.kind == "dense":
            xm = x.reshape(b, -1).astype(layer._wdtype, copy=False)
            acc = np.rint(xm @ layer._wmat).astype(np.int64)
            return _shift(acc, layer.weight_exp)
        o, ho, wo = layer.out_shape
        flat = x.reshape(b, -1)
        nz_b, nz_i = np.nonzero(flat)
        fan = layer._fan_idx.shape[1]
        if method is None:
            cost = EVENT_COST if b <= 4 else 4 * EVENT_COST  # BLAS gets more efficient with the batch
            method = "event" if len(nz_i) * fan * cost < b * ho * wo * layer._wmat.shape[1] * o else "dense"
        if method == "event":
            # event-driven (Loihi's own way): scatter each input event's fan-out
            idx = layer._fan_idx[nz_i] + (nz_b * (o * ho * wo))[:, None]
            wts = layer._fan_w[nz_i]
            if layer.input_message_bits > 0:
                wts = wts * flat[nz_b, nz_i][:, None]
            acc = np.bincount(idx.ravel(), weights=wts.ravel(), minlength=b * o * ho * wo)
            return _signed_wrap(np.rint(acc).astype(np.int64).reshape(b, o, ho, wo), 24)
        cols = _im2col(x.astype(layer._wdtype, copy=False), layer)  # (g, B*Ho*Wo, I/g*kh*kw)
        acc = np.matmul(cols, layer._wmat)  # (g, B*Ho*Wo, O/g)
        acc = np.rint(acc).astype(np.int64).reshape(layer.groups, b, ho, wo, o // layer.groups)
        acc = acc.transpose(1, 0, 4, 2, 3).reshape(b, o, ho, wo)
        return _signed_wrap(acc, 24)


def neuron_msg_bits(g: Any) -> int:
    return int(_read(g, "messageBits", 0) or 0)


def _signed_wrap(x: np.ndarray, bits: int) -> np.ndarray:
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def _im2col(x: np.ndarray, layer: SimLayer) -> np.ndarray:
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


def _conv_fanout_table(layer: SimLayer) -> tuple[np.ndarray, np.ndarray]:
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

def resolve_netx(artifact: str | Path) -> Path:
    """A ``.net`` file, or the ``model.net`` in a folder (``RUN/export/netx``) or a run folder."""
    path = Path(artifact)
    if path.is_dir():
        for cand in (path / "model.net", path / "export" / "netx" / "model.net"):
            if cand.exists():
                return cand
        raise FileNotFoundError(f"{artifact} holds no model.net; export one with "
                                "`stdl-edge export RUN --to netx`")
    return path


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
        self.stream = stream if stream is not None else _stream_from_attrs(net)
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
                  **options: Any) -> LoihiSim:
        return cls(LoihiNet.from_netx(path, input_message_bits=input_message_bits), record=record, **options)

    @classmethod
    def load(cls, artifact: Path, **options: Any) -> LoihiSim:
        """Open a ``.net`` file, or a folder holding ``model.net`` (e.g. ``RUN/export/netx``) or a run folder."""
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
        if first.kind == "input" or first.input_message_bits > 0:
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
            if layer.kind == "input":
                w, b = layer.transform
                bias = x * w + b
                a_in = 0
            else:
                bias = layer.bias
                a_in = st["buf"]
                if x.any():
                    st["buf"] = self.net.synapse(layer, x)
                    flat = x.reshape(x.shape[0], -1)
                    self._synops[k] += int((flat * layer.fanout.reshape(1, -1)).sum()) if layer.kind == "dense" \
                        else int((x * layer.fanout[None]).sum())
                else:
                    st["buf"] = np.zeros_like(st["buf"])
            s, st["u"], st["v"] = cuba_fixed_step(a_in, st["u"], st["v"], layer.i_decay, layer.v_decay,
                                                 bias, layer.vth)
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
        return (v.reshape(self._batch, -1) / (float(1 << ACT_SHIFT) * last.scale)).astype(np.float32)

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


def _stream_from_attrs(net: LoihiNet) -> StreamInfo:
    """The StreamInfo our exporter recorded as root attributes; a plain default for other files."""
    a = net.attrs
    if "sensor_size" in a:
        names = a.get("class_names", ())
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(names).reshape(-1)]
        return StreamInfo(sensor_size=tuple(int(v) for v in np.asarray(a["sensor_size"]).reshape(-1)),
                          dt_us=int(a.get("dt_us", 1000)), num_steps=int(a.get("num_steps", 1)),
                          bin_mode=str(a.get("bin_mode", "binary")), class_names=tuple(names))
    shape = net.input_shape
    c, h, w = shape if len(shape) == 3 else (1, 1, int(np.prod(shape)))
    return StreamInfo(sensor_size=(w, h, c), dt_us=1000, num_steps=1)


DEVICES.register("loihi-sim", LoihiSim.load, "bit-accurate Loihi fixed-point simulator of netx HDF5 (numpy)",
                 requires=("h5py",))
