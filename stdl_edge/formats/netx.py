"""The Lava netx HDF5 format: its constants, the parsed network, the writer and the parser.

(Long file: one module over 400 lines on purpose: everything that knows a netx key name is here, the
writer beside the parser, so the exporter and both netx devices share one definition.)

The layout is what lava-dl's ``netx.hdf5.Network`` reads (and slayer's ``export_hdf5`` writes)::

    layer/0  type='input', shape=[C, H, W]          (a neuron group too: lava-dl's Input block)
    layer/i  type='conv', shape=[C, H, W], weight (O, I/g, kh, kw), stride/padding/dilation
             [y, x] or scalar, groups, bias (optional), neuron/{type='CUBA', iDecay, vDecay,
             vThMant, refDelay, gradedSpike[, messageBits]}
    layer/i  type='flatten', shape=[N]              (netx flattens (x, y, c) as (c, y, x) = PyTorch)
    layer/i  type='dense', shape=[N], weight (N, N_in), bias (optional), delay (optional), neuron/...
    layer/i  type='dense_rec', as dense plus weight_rec (N, N): recurrent dense (netx's RecurrentDense)

Neurons: ``CUBA``/``LOIHI`` (Lava's LIF) and ``SDNN`` (sigma-delta: ``Delta`` in an input layer,
``Sigma`` with a ``sigma_output`` key, ``SigmaDelta`` otherwise), as netx's ``get_neuron_params``.

stdl-edge adds what netx ignores as HDF5 attributes: at the root ``format`` (:data:`FORMAT`),
``format_version`` (:data:`VERSION`), the stream (:meth:`StreamInfo.to_attrs
<stdl_edge.artifact.StreamInfo.to_attrs>`), ``input_message_bits``, ``latency``, ``subnet``,
``layers`` (the source layer range) and ``aux``; per layer group ``scale``, ``exponent``,
``source`` and ``readout``. :func:`write_netx` writes quantized layers; :func:`read_netx`
reads any file netx can build (ours and lava-dl's) into a :class:`NetxNetwork` of
:class:`NetxLayer` blocks, with the integers netx itself would hand to Lava, and raises
:class:`NetxError` naming ``layer/<i>`` for what netx (or a CUBA simulator) cannot run.
A file without our attributes gets a stream with ``dt_us = None`` (supply ``dt_us=``).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from stdl_edge.artifact import StreamInfo, resolve_artifact
from stdl_edge.formats.export_record import EXPORT_ID, FILES, check_files, file_digests, read_record
from stdl_edge.io import atomic_path, write_json
from stdl_edge.loihi import ACT_SHIFT, BASE_SCALE, DECAY_UNITY

if TYPE_CHECKING:
    from stdl_edge.quant import FoldedLayer, LayerQuant

FORMAT = "stdl-edge-netx"
#: 2: stream attributes as ``StreamInfo.to_attrs`` (lists as JSON strings); 1: lists as HDF5 arrays
VERSION = 2
#: the whole model's file in an export folder (``RUN/export/netx``)
MODEL_FILE = "model.net"
#: an export folder's record, written last: ``kind``, ``export_id`` and ``files`` (name -> sha256)
EXPORT_RECORD, EXPORT_KIND = "export.json", "stdl-edge-netx-export"
INPUT, FLATTEN, DENSE, CONV, DENSE_REC = "input", "flatten", "dense", "conv", "dense_rec"
LAYER_TYPES = (INPUT, FLATTEN, DENSE, CONV, DENSE_REC)
#: neuron types netx builds as CUBA (Lava's LIF), and as sigma-delta
NEURON_TYPES = ("CUBA", "LOIHI")
SDNN = "SDNN"
#: the neuron models a block can have (``NetxNeuron.model``): Lava's LIF, and lava.proc.sdn's
#: Delta (an SDNN input layer), Sigma (an SDNN layer with ``sigma_output``) and SigmaDelta
CUBA_MODEL, DELTA, SIGMA, SIGMA_DELTA = "cuba", "delta", "sigma", "sigma_delta"
#: each neuron model's state variables (the Var names of its Lava process), in recording order
NEURON_STATES = {CUBA_MODEL: ("u", "v"), DELTA: ("act", "residue"), SIGMA: ("sigma",),
                 SIGMA_DELTA: ("sigma", "act", "residue")}
#: the state a readout of the last block reads: a CUBA layer's voltage, an SDNN layer's accumulator
READOUT_STATE = {CUBA_MODEL: "v", DELTA: "act", SIGMA: "sigma", SIGMA_DELTA: "sigma"}
#: netx's defaults for SDNN neurons: graded spikes of 16 bits, ``spike_exp = state_exp = 6``
SDNN_MESSAGE_BITS, SPIKE_EXP, STATE_EXP = 16, 6, 6
#: netx clamps delays to ``0..MAX_DELAY`` (``DelayDense(max_delay=62)``)
MAX_DELAY = 62
#: netx ``Network(reset_interval=ALIGNED_INTERVAL, reset_offset=1)``: each block is reset once, when
#: the sample's first input reaches it (the aligned mode of the loihi-sim and lava devices)
ALIGNED_INTERVAL = 1 << 40
#: lava-dl slayer's weight of an Input block (``bias_mant = weight * x + bias``) when the file has none
INPUT_WEIGHT = 64
#: the 8-bit weight field of Lava's dense synapse (``clip_weights(num_bits=8)``)
WEIGHT_BITS = 8
#: the largest layer (neurons) and weight dataset (values) the parser reads: a file declaring
#: more is refused before anything is allocated (a Loihi 2 chip has about 1 M neurons)
MAX_NEURONS, MAX_WEIGHTS = 1 << 24, 1 << 26
#: what a malformed dataset raises while it is read (wrong type, rank or size)
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError, OSError)


class NetxError(ValueError):
    """A netx file netx itself (or a CUBA simulator of it) cannot run; the message names the layer."""


@dataclass(frozen=True)
class NetxNeuron:
    """A ``neuron`` group as netx reads it (CUBA; integers).

    i_decay, v_decay: ``iDecay``, ``vDecay`` in 1/4096 per step (0..4096; 4096 forgets all).
    vth: ``vThMant`` (the neuron fires when ``v > vth << 6``).
    ref_delay, graded_spike: read and ignored by netx's CUBA (Lava's LIF has neither).
    message_bits: payload bits of the spikes it sends (0: unary; SDNN default 16).
    model: :data:`CUBA_MODEL`, or for ``type='SDNN'`` :data:`DELTA`, :data:`SIGMA` or
        :data:`SIGMA_DELTA` (vth is then the delta threshold, compared after ``<< 12``).
    """

    i_decay: int
    v_decay: int
    vth: int
    type: str = "CUBA"
    ref_delay: int = 1
    graded_spike: bool = False
    message_bits: int = 0
    model: str = CUBA_MODEL


#: netx's neuron for a layer group without one: a non-leaky integrator that never fires
DEFAULT_NEURON = NetxNeuron(i_decay=0, v_decay=DECAY_UNITY, vth=1 << 17)


@dataclass(frozen=True, eq=False)
class NetxLayer:
    """One block of a netx network (``netx.hdf5.Network.layers[block]``).

    index: the HDF5 group ``layer/<index>``; block: position among the blocks (name ``layer<block>``).
    kind: 'input' (an input layer with a neuron, lava-dl's Input block), 'dense' (also for
        'dense_rec', which has ``weight_rec``) or 'conv'.
    out_shape: ``(C, H, W)`` or ``(N,)``; in_shape: what the block receives (a dense layer after a
        flatten receives ``(C, H, W)`` and flattens it in ``(c, y, x)`` order).
    bias: ``bias_mant`` broadcast to ``out_shape``, int64.
    weight: dense ``(O, I)``: the effective integers of netx's synapse (:func:`netx_dense_weights`),
        output ``(W s) >> -weight_exp``; conv ``(O, I/g, kh, kw)`` as stored (PyTorch layout,
        cross-correlation, no exponent); None for an input block.
    stride, padding, dilation: ``(y, x)``; groups: conv groups.
    input_message_bits: payload bits of what the block receives (0: unary spikes).
    transform: an input block's ``(weight, bias)``: its neurons get ``bias_mant = weight * x + bias``.
    scale: weight units per 1.0 (the ``scale`` attribute of our exporter; lava-dl's 64 otherwise).
    delay: dense only, per synapse ``(O, I)`` delays in steps (0..62) on top of the synapse's one
        step, as netx hands them to ``DelayDense``; None without a ``delay`` dataset.
    weight_rec: dense_rec only, the effective recurrent weights ``(O, O)`` (same exponent as
        ``weight``); delay_rec: their delays (netx reuses ``delay``), None without delays.
    """

    index: int
    block: int
    kind: str
    out_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    neuron: NetxNeuron
    bias: np.ndarray
    weight: np.ndarray | None = None
    weight_exp: int = 0
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input_message_bits: int = 0
    transform: tuple[int, int] = (INPUT_WEIGHT, 0)
    scale: float = BASE_SCALE
    delay: np.ndarray | None = None
    weight_rec: np.ndarray | None = None
    delay_rec: np.ndarray | None = None

    @property
    def max_delay(self) -> int:
        """The longest delay of the block's feed-forward synapses (0 without delays)."""
        return int(self.delay.max()) if self.delay is not None and self.delay.size else 0

    @property
    def name(self) -> str:
        return f"layer{self.block}"

    @property
    def synaptic(self) -> bool:
        return self.kind in (DENSE, CONV)

    @property
    def voltage_scale(self) -> float:
        """Integer voltage units per 1.0 of the float model: ``v / voltage_scale`` (``64 * scale``)."""
        return float(1 << ACT_SHIFT) * self.scale

    @cached_property
    def fanout(self) -> np.ndarray | None:
        """Non-zero synapses leaving each input element (synaptic operations per input spike):
        dense ``(I,)``, conv ``in_shape`` ``(C, H, W)``; None for an input block."""
        if self.kind == DENSE:
            return (self.weight != 0).sum(axis=0).astype(np.int64)
        if self.kind != CONV:
            return None
        c, h, w = self.in_shape
        o, ho, wo = self.out_shape
        _, ig, kh, kw = self.weight.shape
        (sy, sx), (py, px), (dy, dx) = self.stride, self.padding, self.dilation
        g = self.groups
        # outputs reached through each (input channel, kernel tap): (C, kh, kw); channel c is in group c // ig
        reached = (self.weight != 0).reshape(g, o // g, ig, kh, kw).sum(axis=1).reshape(c, kh, kw)
        fan = np.zeros((c, h, w), dtype=np.int64)
        for ky in range(kh):
            on_y = _tap_hits(h, ho, sy, py, ky * dy)
            for kx in range(kw):
                fan += reached[:, ky, kx, None, None] * (on_y[:, None] & _tap_hits(w, wo, sx, px, kx * dx)[None, :])
        return fan


    @cached_property
    def fanout_rec(self) -> np.ndarray | None:
        """Non-zero recurrent synapses leaving each neuron of a dense_rec block ``(O,)``; None otherwise."""
        return None if self.weight_rec is None else (self.weight_rec != 0).sum(axis=0).astype(np.int64)


def _tap_hits(size: int, out: int, stride: int, pad: int, offset: int) -> np.ndarray:
    """Input positions ``i`` whose kernel tap at ``offset`` lands on an output ``(i + pad - offset) / stride``."""
    n = np.arange(size) + pad - offset
    return (n % stride == 0) & (n >= 0) & (n // stride < out)


@dataclass(frozen=True, eq=False)
class NetxNetwork:
    """A parsed netx file: its blocks in order, the input shape and the stream it expects.

    stream: our root attributes, or for a foreign file the sensor implied by ``input_shape``,
        ``num_steps = 1`` and ``dt_us = None`` (unless ``read_netx(..., dt_us=)`` supplied it).
    input_message_bits: payload bits of the network's input (0: unary spikes, netx's default).
    version: our ``format_version``; None for a file stdl-edge did not write.
    bits_from_file: the input's message bits are those of a layer in the file (a skipped block or
        an input neuron), which netx uses in place of ``Network(input_message_bits=...)``.
    """

    path: Path
    input_shape: tuple[int, ...]
    layers: tuple[NetxLayer, ...]
    stream: StreamInfo
    input_message_bits: int = 0
    version: int | None = None
    bits_from_file: bool = False

    @property
    def latency(self) -> int:
        """Steps from an input frame to the last readout it causes: one per synapse (Lava's
        ``a_buff``) plus each dense layer's longest delay (``DelayDense``)."""
        return sum(1 + layer.max_delay for layer in self.layers if layer.synaptic)


    def with_input_message_bits(self, bits: int) -> NetxNetwork:
        """The same network with its first synapse reading ``bits``-bit payloads (netx's
        ``Network(input_message_bits=bits)``); an input-layer network is returned unchanged."""
        first = self.layers[0]
        if first.kind == INPUT:
            return self
        return replace(self, layers=(replace(first, input_message_bits=int(bits)), *self.layers[1:]),
                       input_message_bits=int(bits))


def resolve_netx(artifact: str | Path) -> Path:
    """A ``.net`` file, or the ``model.net`` of an export folder (``RUN/export/netx``) or of a
    run folder's netx export (:func:`stdl_edge.artifact.resolve_artifact`). A folder with an
    :data:`EXPORT_RECORD` is checked whole (:func:`check_export`); one without (lava-dl's own, or
    exported before the record) is read as it is."""
    path = resolve_artifact(artifact, "netx")
    if path.is_dir():
        if (path / EXPORT_RECORD).exists():
            check_export(path)
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{artifact} holds no {MODEL_FILE}; export one with "
                                    "`stdl-edge export RUN --to netx`")
        return path / MODEL_FILE
    return path


def write_export_record(folder: Path, export_id: str, names: list[str]) -> Path:
    """Write ``folder/export.json`` (last, once every file in ``names`` is written); returns its path."""
    path = folder / EXPORT_RECORD
    write_json(path, {"kind": EXPORT_KIND, "format_version": VERSION, EXPORT_ID: export_id,
                      FILES: file_digests(folder, names)})
    return path


def check_export(folder: Path) -> None:
    """Refuse an export folder whose files do not belong to the export its :data:`EXPORT_RECORD` names."""
    record = folder / EXPORT_RECORD
    data = read_record(record, "netx")
    if not isinstance(data, dict) or data.get("kind") != EXPORT_KIND:
        raise NetxError(f"{record} is not a netx export record (kind={data.get('kind') if isinstance(data, dict) else None!r}); "
                        "re-export with `stdl-edge export RUN --to netx`")
    check_files(folder, record, data, "netx")


# ----------------------------------------------------------------------------- netx's dense weights
def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and exponent a netx Dense synapse really uses: ``(W_eff, exp)``.

    Reproduces ``lava.lib.dl.netx.utils.optimize_weight_bits`` followed by Lava's
    ``determine_sign_mode``, ``clip_weights(num_bits=8)`` and ``truncate_weights``. The
    synapse output is ``(W_eff @ s) >> -exp`` (``<< exp`` if ``exp > 0``). For a well-formed
    matrix ``W_eff >> -exp == W``; lava-dl issue 170 (and single-sign matrices whose
    extreme is a power of two) are where it is not. An all-zero matrix makes netx divide by
    zero; that raises :class:`NetxError`.

    >>> eff, exp = netx_dense_weights(np.array([[16, 64, 0]]))   # shifted left by 1 bit, then back
    >>> eff.tolist(), exp, (eff >> -exp).tolist()
    ([[32, 128, 0]], -1, [[16, 64, 0]])
    """
    shifted, num_weight_bits, exp = optimize_weight_bits(weight)
    return lava_synapse_weights(shifted, num_weight_bits), exp


def netx_recurrent_weights(weight: np.ndarray, weight_rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """netx's ``RecurrentDense``: ``(W_eff, W_rec_eff, exp)``. ``optimize_weight_bits`` runs on
    ``hstack(weight, weight_rec)`` (one exponent and weight width for both), then each synapse
    does its own sign mode, clip and truncation (Lava's ``Dense`` model, per process)."""
    shifted, num_weight_bits, exp = optimize_weight_bits(np.hstack([weight, weight_rec]))
    n_in = np.shape(weight)[1]
    return (lava_synapse_weights(shifted[:, :n_in], num_weight_bits),
            lava_synapse_weights(shifted[:, n_in:], num_weight_bits), exp)


def optimize_weight_bits(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``lava.lib.dl.netx.utils.optimize_weight_bits``: ``(W << scale_bits, num_weight_bits, -scale_bits)``."""
    w = np.asarray(weight).astype(np.int32)  # netx's int after its clip to 9 bits: int32 is plenty
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
    # netx's loop: the largest n <= 8 with every weight a multiple of 2**n; in two's complement that
    # is the number of trailing zero bits of all weights OR-ed together (one pass instead of eight)
    low = int(np.bitwise_or.reduce(w, axis=None)) & 0xFF
    n = WEIGHT_BITS if low == 0 else (low & -low).bit_length() - 1
    n -= is_signed
    if scale_bits < 0:
        raise NetxError(f"dense weights up to {max_w} need a negative shift in netx (undefined); "
                        "keep |weight| <= 254")
    return w << scale_bits, WEIGHT_BITS - scale_bits - n, -scale_bits


def lava_synapse_weights(shifted: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """Lava's ``PyDenseModelBitAcc`` weight set-up: its own sign mode of ``shifted``, then
    ``clip_weights(num_bits=8)`` and ``truncate_weights(num_weight_bits)``."""
    if shifted.min() >= 0:
        mode = "exc"
    elif shifted.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    x = -shifted if mode == "inh" else shifted
    x = np.clip(x, -(1 << WEIGHT_BITS) * mixed, (1 << WEIGHT_BITS) - 1)
    t = WEIGHT_BITS - num_weight_bits + mixed
    x = (x >> t) << t
    return -x if mode == "inh" else x


# ----------------------------------------------------------------------------- the writer
def _write_str(handle: Any, key: str, value: str) -> None:
    handle.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _write_neuron(handle: Any, q: LayerQuant) -> None:
    n = handle.create_group("neuron")
    _write_str(n, "type", "CUBA")
    n.create_dataset("iDecay", data=np.int64(q.i_decay))
    n.create_dataset("vDecay", data=np.int64(q.v_decay))
    n.create_dataset("vThMant", data=np.int64(q.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.bool_(False))


def write_netx(path: str | Path, layers: Sequence[LayerQuant | FoldedLayer], input_shape: tuple[int, ...],
               stream: StreamInfo, *, input_message_bits: int = 0, subnet: int = -1, aux: bool = False,
               layer_range: tuple[int, int] | None = None) -> Path:
    """Write quantized layers (:func:`stdl_edge.quant.quantize_model`) as a netx file (atomic).

    Dense weights must already be netx-exact. ``subnet``: -1 for the whole model, ``k`` for
    STDL subnetwork ``k`` (or, with ``aux``, the auxiliary head after it); ``layer_range``:
    the ``(start, stop)`` SpikingNet layers the file holds.
    """
    import h5py

    path = Path(path)
    attrs: dict[str, Any] = {"format": FORMAT, "format_version": VERSION, **stream.to_attrs(),
                             "input_message_bits": int(input_message_bits),
                             "latency": sum(1 for q in layers if q.kind != FLATTEN)}
    if layer_range is not None:
        attrs["layers"] = np.array(layer_range, dtype=np.int64)
    attrs["subnet"] = int(subnet)
    if aux:
        attrs["aux"] = 1
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(attrs)
            group = f.create_group("layer")
            g = group.create_group("0")
            _write_str(g, "type", INPUT)
            g.create_dataset("shape", data=np.array(input_shape, dtype=np.int64))
            for i, q in enumerate(layers, start=1):
                g = group.create_group(str(i))
                _write_str(g, "type", q.kind)
                g.create_dataset("shape", data=np.array(q.out_shape, dtype=np.int64))
                g.attrs["source"] = q.name
                if q.kind == FLATTEN:
                    continue
                if q.kind == CONV:
                    g.create_dataset("inChannels", data=np.int64(q.weight.shape[1]))
                    g.create_dataset("outChannels", data=np.int64(q.weight.shape[0]))
                    g.create_dataset("kernelSize", data=np.array(q.weight.shape[2:], dtype=np.int64))
                    g.create_dataset("stride", data=np.array([q.stride, q.stride], dtype=np.int64))
                    g.create_dataset("padding", data=np.array([q.padding, q.padding], dtype=np.int64))
                    g.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
                    g.create_dataset("groups", data=np.int64(1))
                else:
                    g.create_dataset("inFeatures", data=np.int64(q.weight.shape[1]))
                    g.create_dataset("outFeatures", data=np.int64(q.weight.shape[0]))
                g.create_dataset("weight", data=q.weight.astype(np.int16))
                if q.weight_rec is not None:
                    g.create_dataset("weight_rec", data=q.weight_rec.astype(np.int16))
                if q.bias is not None and np.any(q.bias):
                    g.create_dataset("bias", data=q.bias.astype(np.int32))
                _write_neuron(g, q)
                g.attrs["scale"] = float(q.scale)
                g.attrs["exponent"] = int(q.exponent)
                g.attrs["readout"] = bool(q.readout)
    return path


# ----------------------------------------------------------------------------- the parser
def read_netx(path: str | Path, input_message_bits: int | None = None, dt_us: int | None = None,
              num_layers: int | None = None, skip_layers: int = 0) -> NetxNetwork:
    """Parse a netx file into its blocks, as ``netx.hdf5.Network`` builds them.

    input_message_bits: payload bits of the input (default: the file's attribute, else 0).
    dt_us: the time step of a file that records none (a lava-dl export); must agree with the
        file's own otherwise.
    num_layers, skip_layers: netx's options: read only the first ``num_layers`` layer groups
        (``layer/0 .. layer/<num_layers - 1>``, flatten and shape-only input included), and leave
        out the blocks of the first ``skip_layers`` groups (a skipped block's output shape and
        message bits become the network's input, as in netx).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"netx file {path} does not exist")
    if num_layers is not None and num_layers < 1:
        raise NetxError(f"num_layers={num_layers} must be >= 1 (or None for all layers)")
    if skip_layers < 0:
        raise NetxError(f"skip_layers={skip_layers} must be >= 0")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise NetxError(f"{path} is not a readable HDF5 file ({e})") from None
    with f:
        with _reading(f"{path}: a root attribute"):
            attrs = dict(f.attrs.items())
            version = _version(path, attrs)
            if input_message_bits is None:
                input_message_bits = _int(attrs, "input_message_bits", 0)
        if "layer" not in f or not hasattr(f["layer"], "keys"):
            raise NetxError(f"{path} has no 'layer' group: it is not a netx network")
        layers, input_shape, from_file = _read_layers(path, f["layer"], input_message_bits, num_layers, skip_layers)
    if not layers:
        raise NetxError(f"{path}: the network has no block (input neuron, dense or conv layer) "
                        f"with num_layers={num_layers}, skip_layers={skip_layers}")
    c, h, w = input_shape if len(input_shape) == 3 else (1, 1, int(np.prod(input_shape)))
    with _reading(f"{path}: the stream attributes"):
        stream = StreamInfo.from_attrs(attrs, sensor_size=(w, h, c))
    if skip_layers:
        stream = replace(stream, sensor_size=(w, h, c))
    if dt_us is not None and stream.dt_us not in (None, dt_us):
        raise NetxError(f"{path} records dt_us={stream.dt_us}; dt_us={dt_us} disagrees (leave dt_us out)")
    if dt_us is not None:
        stream = replace(stream, dt_us=dt_us)
    return NetxNetwork(path, input_shape, tuple(layers), stream, layers[0].input_message_bits, version, from_file)


def _version(path: Path, attrs: dict[str, Any]) -> int | None:
    if attrs.get("format") != FORMAT:
        return None
    version = _int(attrs, "format_version", 1)
    if version > VERSION:
        raise NetxError(f"{path} is {FORMAT} version {version}; this stdl-edge reads versions up to {VERSION} "
                        "(upgrade stdl-edge)")
    return version


@contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn what a malformed dataset raises (wrong type, rank, a missing key) into a one-line :class:`NetxError`."""
    try:
        yield
    except NetxError:
        raise
    except _MALFORMED as e:
        raise NetxError(f"{where} is malformed ({type(e).__name__}: {str(e)[:120]}); re-export with "
                        "`stdl-edge export RUN --to netx`") from None


def _layer_keys(path: Path, group: Any) -> list[str]:
    keys = list(group.keys())
    bad = [k for k in keys if not k.isdigit()]
    if bad:
        raise NetxError(f"{path.name}: layer/{bad[0]} is not a layer number; netx names layer groups 0, 1, ...")
    return sorted(keys, key=int)


def _read_layers(path: Path, group: Any, input_message_bits: int, num_layers: int | None = None,
                 skip_layers: int = 0) -> tuple[list[NetxLayer], tuple[int, ...], bool]:
    """The blocks of ``layer/`` (netx's ``Network._create``), the input shape, and whether the first
    block's message bits come from the file; a malformed group is a :class:`NetxError` naming ``layer/<i>``."""
    layers: list[NetxLayer] = []
    input_shape: tuple[int, ...] | None = None
    cur_shape: tuple[int, ...] | None = None
    msg_bits = input_message_bits
    from_file = False
    flatten_next = False
    keys = _layer_keys(path, group)
    if num_layers is not None:
        keys = keys[:num_layers]
    for key in keys:
        where = f"{path.name}: layer/{key}"
        with _reading(where):
            g, i = group[key], int(key)
            ltype = _read_str(g, "type")
            block = len(layers)
            keep = i >= skip_layers
            scale = float(g.attrs.get("scale", BASE_SCALE))
            if ltype == INPUT:
                shape = _shape(g, where)
                if "neuron" in g:
                    neuron = _neuron(g["neuron"], where, is_input=True)
                    transform = (_int(g, "weight", INPUT_WEIGHT), _int(g, "bias", 0))
                    if keep:
                        layers.append(NetxLayer(i, block, INPUT, shape, shape, neuron,
                                                np.zeros(shape, dtype=np.int64), transform=transform, scale=scale))
                    msg_bits, from_file = neuron.message_bits, from_file or not layers
                input_shape = cur_shape = shape
            elif ltype == FLATTEN:
                flatten_next = True
            elif ltype in (DENSE, CONV, DENSE_REC):
                neuron = _neuron(g["neuron"], where) if "neuron" in g else DEFAULT_NEURON
                if ltype == CONV:
                    if cur_shape is None:
                        raise NetxError(f"{where}: conv layer with no input shape before it; netx needs "
                                        "an 'input' layer with a shape (or input_shape=...)")
                    if "delay" in g:
                        warnings.warn(f"{where}: netx ignores a conv layer's 'delay' (Network.create_conv); "
                                      "loihi-sim runs it without delays too, as Lava does", stacklevel=3)
                    layer = _conv(g, i, block, neuron, cur_shape, where)
                else:
                    layer = _dense(g, i, block, neuron, cur_shape, flatten_next, where, ltype == DENSE_REC)
                if neuron.model == SIGMA and np.any(layer.bias):
                    raise NetxError(f"{where}: an SDNN 'sigma_output' neuron with a 'bias': netx passes the "
                                    "bias to lava.proc.sdn.Sigma, which takes none (Lava cannot build it)")
                layer = replace(layer, input_message_bits=msg_bits, scale=scale)
                if keep:
                    layers.append(layer)
                    input_shape = input_shape or layer.in_shape
                else:
                    input_shape, from_file = layer.out_shape, True
                cur_shape, msg_bits, flatten_next = layer.out_shape, neuron.message_bits, False
            else:
                raise NetxError(f"{where} has type {ltype!r}, which netx cannot build (netx.hdf5.Network "
                                f"supports {', '.join(LAYER_TYPES)}); loihi-sim runs the same subset")
    if input_shape is None:
        raise NetxError(f"{path}: cannot infer the input shape")
    return layers, input_shape, from_file


def _read(group: Any, key: str, default: Any = None) -> Any:
    return group[key][()] if key in group else default


def _int(group: Any, key: str, default: int) -> int:
    """A scalar dataset; slayer writes some as 1-element arrays (``int()`` of one is deprecated)."""
    return int(np.asarray(_read(group, key, default)).reshape(-1)[0])


def _shape(group: Any, where: str) -> tuple[int, ...]:
    """The ``shape`` dataset: whole numbers >= 1, at most :data:`MAX_NEURONS` neurons."""
    if "shape" not in group:
        raise NetxError(f"{where}: no 'shape' dataset; netx needs each layer's shape (re-export)")
    shape = tuple(int(v) for v in np.asarray(group["shape"][()]).reshape(-1))
    if not shape or min(shape) < 1:
        raise NetxError(f"{where}: shape {list(shape)} must be whole numbers >= 1 (re-export)")
    if math.prod(shape) > MAX_NEURONS:
        raise NetxError(f"{where}: shape {list(shape)} declares {math.prod(shape)} neurons, more than the "
                        f"{MAX_NEURONS} a layer may have; the file is corrupt (re-export)")
    return shape


def _weight(group: Any, where: str, key: str = "weight") -> np.ndarray:
    """The ``weight`` dataset as integers, refused above :data:`MAX_WEIGHTS` values before it is read."""
    ds = group[key]
    if not hasattr(ds, "size") or ds.size > MAX_WEIGHTS or ds.size == 0:
        raise NetxError(f"{where}: '{key}' must be a dataset of 1..{MAX_WEIGHTS} values "
                        f"(has {getattr(ds, 'size', 'none')}); the file is corrupt (re-export)")
    return np.asarray(ds[()]).astype(int)


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
    return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))


def _neuron(g: Any, where: str, is_input: bool = False) -> NetxNeuron:
    """A ``neuron`` group as ``netx.hdf5.Network.get_neuron_params`` reads it."""
    ntype = _read_str(g, "type")
    if ntype == SDNN:
        model = DELTA if is_input else SIGMA if "sigma_output" in g else SIGMA_DELTA
        if model != SIGMA and "vThMant" not in g:
            raise NetxError(f"{where}: SDNN neuron without a 'vThMant' (delta threshold) dataset")
        return NetxNeuron(i_decay=0, v_decay=0, vth=_int(g, "vThMant", 0), type=ntype,
                          message_bits=_int(g, "messageBits", SDNN_MESSAGE_BITS), model=model)
    if ntype not in NEURON_TYPES:
        raise NetxError(f"{where}: neuron type {ntype!r} is not supported by loihi-sim (CUBA, LOIHI and SDNN "
                        "are; netx's RF/RF_IZ resonate-and-fire neurons need Lava)")
    if "vThMant" not in g:
        raise NetxError(f"{where}: neuron without a 'vThMant' (threshold) dataset")
    neuron = NetxNeuron(i_decay=_int(g, "iDecay", 0), v_decay=_int(g, "vDecay", 0), vth=_int(g, "vThMant", 0),
                        type=ntype, ref_delay=_int(g, "refDelay", 1), graded_spike=bool(_int(g, "gradedSpike", 0)),
                        message_bits=_int(g, "messageBits", 0))
    for label, val in (("iDecay", neuron.i_decay), ("vDecay", neuron.v_decay)):
        if not 0 <= val <= DECAY_UNITY:
            raise NetxError(f"{where}: neuron {label}={val} is outside 0..{DECAY_UNITY}")
    return neuron


def _delay(g: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    """netx's ``create_dense`` delays for a weight of ``shape (O, I)``: clamped to ``0..62`` when
    one exceeds 62, a scalar or 1-D vector spread to ``(O, I)`` (per output if it has ``O``
    entries, per input if ``I``), truncated to integers (``astype(int)``)."""
    d = np.asarray(g["delay"][()])
    if d.size and d.max() > MAX_DELAY:
        warnings.warn(f"{where}: delay {d.max()} is above {MAX_DELAY}; netx clamps the delays to 0..{MAX_DELAY} "
                      "(and so does loihi-sim)", stacklevel=4)
        d = np.clip(d, 0, MAX_DELAY)
    if d.ndim == 0:
        d = np.full(shape, d)
    elif d.ndim == 1 and d.size == shape[0]:
        d = np.repeat(d.reshape(-1, 1), shape[1], axis=1)
    elif d.ndim == 1 and d.size == shape[1]:
        d = np.repeat(d.reshape(1, -1), shape[0], axis=0)
    elif d.ndim == 1:
        raise NetxError(f"{where}: delay of shape {d.shape} fits neither the {shape[0]} outputs nor the "
                        f"{shape[1]} inputs of weight {shape} (netx raises the same)")
    if d.shape != shape:
        raise NetxError(f"{where}: delay of shape {d.shape} differs from the weight's {shape} "
                        "(Lava's DelayDense refuses it)")
    d = d.astype(int)
    if d.size and d.min() < 0:
        raise NetxError(f"{where}: negative delay {int(d.min())} (Lava's DelayDense accepts 0..62 only)")
    return d.astype(np.int64)


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


def _dense(g: Any, i: int, block: int, neuron: NetxNeuron, cur_shape: tuple[int, ...] | None,
           flatten_next: bool, where: str, recurrent: bool = False) -> NetxLayer:
    if "weight" not in g:
        raise NetxError(f"{where}: dense layer without a 'weight' dataset (has {', '.join(g.keys())}); "
                        "netx needs one")
    if not hasattr(g["weight"], "shape"):
        raise NetxError(f"{where}: complex dense weights ('weight/real', 'weight/imag': netx's ComplexDense, "
                        "which needs RF neurons) are not supported by loihi-sim")
    shape = (math.prod(_shape(g, where)),)
    w = _weight(g, where)
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
    delay = _delay(g, w.shape, where) if "delay" in g else None
    w_rec = delay_rec = None
    try:
        if recurrent:
            if "weight_rec" not in g:
                raise NetxError("a dense_rec layer needs a 'weight_rec' dataset (netx reads it)")
            wr = _weight(g, where, "weight_rec")
            wr = wr.reshape(shape[0], -1) if wr.ndim == 1 else wr
            if wr.shape != (shape[0], shape[0]):
                raise NetxError(f"weight_rec of shape {wr.shape} must be ({shape[0]}, {shape[0]})")
            w_eff, w_rec, exp = netx_recurrent_weights(w, wr)
            if delay is not None:
                if in_n != shape[0]:
                    raise NetxError(f"dense_rec with delays and {in_n} inputs for {shape[0]} neurons: netx reuses "
                                    "the input delays for the recurrent synapse and Lava's DelayDense refuses them")
                # lava-dl 0.6's RecurrentDense passes no weight_exp to DelayDense: both synapses run unshifted
                delay_rec, exp = delay, 0
        else:
            w_eff, exp = netx_dense_weights(w)
    except NetxError as e:
        raise NetxError(f"{where}: {e}") from None
    in_shape = tuple(cur_shape) if cur_shape is not None else (in_n,)
    return NetxLayer(i, block, DENSE, shape, in_shape, neuron, _bias(g, shape, where), weight=w_eff, weight_exp=exp,
                     delay=delay, weight_rec=w_rec, delay_rec=delay_rec)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv(g: Any, i: int, block: int, neuron: NetxNeuron, cur_shape: tuple[int, ...], where: str) -> NetxLayer:
    if len(cur_shape) != 3:
        raise NetxError(f"{where}: conv layer after a layer of shape {cur_shape}; it needs (C, H, W)")
    w = _weight(g, where)
    if w.ndim < 4 or any(n != 1 for n in w.shape[4:]):
        raise NetxError(f"{where}: conv weight of shape {w.shape} is not (O, I/groups, kh, kw) (re-export)")
    w = w.reshape(w.shape[:4]).astype(np.int64)  # (O, I/g, kh, kw), PyTorch layout
    stride, padding = _pair(_read(g, "stride"), 1), _pair(_read(g, "padding"), 0)
    dilation = _pair(_read(g, "dilation"), 1)
    groups = _int(g, "groups", 1)
    for label, pair, low in (("stride", stride, 1), ("dilation", dilation, 1), ("padding", padding, 0)):
        if min(pair) < low:
            raise NetxError(f"{where}: {label} {list(pair)} must be >= {low} (re-export)")
    if groups < 1 or min(w.shape) < 1:
        raise NetxError(f"{where}: groups={groups} and kernel {w.shape} must be >= 1 (re-export)")
    c, h, wd = cur_shape
    if c % groups or w.shape[0] % groups or w.shape[1] * groups != c:
        raise NetxError(f"{where}: kernel {w.shape} with groups={groups} does not fit {c} input channels")
    out = (w.shape[0], _conv_out(h, w.shape[2], stride[0], padding[0], dilation[0]),
           _conv_out(wd, w.shape[3], stride[1], padding[1], dilation[1]))
    shape = _shape(g, where)
    if shape != out:
        raise NetxError(f"{where}: conv output shape {out} (C, H, W) differs from the recorded {shape}")
    return NetxLayer(i, block, CONV, out, tuple(cur_shape), neuron, _bias(g, out, where), weight=w, stride=stride,
                     padding=padding, dilation=dilation, groups=groups)
