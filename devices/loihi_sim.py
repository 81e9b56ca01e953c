"""``loihi-sim``: a bit-accurate numpy simulator of Lava netx HDF5 networks (Loihi fixed point).

It runs every network lava-dl's ``netx.hdf5.Network`` builds (our exports and lava-dl's own),
vectorised over a batch of streams, with the integer arithmetic of Lava's
``Loihi2SimCfg(select_tag='fixed_pt')`` models, checked bit for bit against Lava:

* synapses (:mod:`devices.loihi_sim_synapses`): ``Dense``, ``DelayDense`` (a dense layer with
  ``delay``), netx's ``RecurrentDense`` (``dense_rec``: a second dense synapse from the layer's own
  spikes, sharing the input's exponent) and ``Conv``;
* neurons (:mod:`devices.loihi_sim_neurons`): CUBA LIF, and the sigma-delta ``Delta`` /
  ``SigmaDelta`` / ``Sigma`` of netx's ``SDNN`` neuron, whose graded spikes the next synapse
  multiplies (``input_message_bits > 0``; with 0 Lava's synapses read any non-zero as a spike).
* **Synapse latency**: every synapse sends the activation it computed on the previous step
  (``a_out.send(a_buff)`` before it receives), so each dense/conv layer adds one step, and a
  delay ``d`` ``d`` more: :attr:`LoihiSim.latency` is ``sum(1 + max delay)`` over the synaptic
  blocks. The recurrent synapse of a ``dense_rec`` layer delivers step ``t``'s spikes at ``t + 1``.
* **Input** (:mod:`devices.netx_input`): unary spikes into the first synapse (``spike``), integer
  payloads (``graded``; into a ``Delta`` input layer's ``a_in``), or the frame written into an
  input layer's bias (``bias``: ``bias_mant = weight * x + bias``, lava-dl's ``Input`` block).

As a device (``open_device('loihi-sim', ...)``) it runs netx's staggered reset aligned to the
sample (CUBA block ``k`` zeroes ``u, v`` once, at step ``k + 1``, when the first input reaches it;
Lava: ``Network(reset_interval=R, reset_offset=1)``; SDNN blocks ignore resets, as in netx, and
delayed input already in flight is not cleared), so the bias-only steps of the pipeline fill do
not perturb the readout; :meth:`LoihiSim.run` is the plain ``Network`` by default.

States are int64 (CUBA) / int32 (SDNN, as Lava) arrays in the model's layout ``(B, C, H, W)`` /
``(B, N)``; Lava keeps ``(x, y, c)`` (transpose to compare). Layer names are ``layer<k>``, ``k``
indexing the blocks of ``netx.hdf5.Network.layers`` (input-with-neuron, dense, conv; a
neuron-less input and flatten make no block). The readout is the last block's voltage (SDNN:
``sigma``), in float units ``v / (64 * scale)`` with ``scale`` the layer's weight scale recorded by
our exporter (64, lava-dl's ``w_scale``, for other files).

The file is read by :func:`stdl_edge.formats.netx.read_netx` (the one netx parser, shared with
the ``lava`` device and the exporter); this module holds the network state and the device.

Long file: one simulator: its network state, the block update that both the single step and
the whole-window run use, the reset schedule and the counts; the arithmetic lives in the
neuron and synapse modules beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.artifact import StreamInfo
from stdl_edge.formats.netx import ALIGNED_INTERVAL, CUBA_MODEL, INPUT, NEURON_STATES, READOUT_STATE, NetxLayer, \
    NetxNetwork, read_netx, resolve_netx
from stdl_edge.loihi import UV_BITS
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats, chunk_steps
from .loihi_sim_neurons import cuba_fixed_chunk, cuba_fixed_step, cuba_needs_checks, decay_toward_zero, \
    initial_state, neuron_step, wrap_current
from .loihi_sim_synapses import ConvKernel, DelayedDense, DenseKernel, feed_forward, recurrent, shift
from .netx_input import BIAS, encode_input, resolve_input_mode
from .threads import check_threads, limit_blas_threads, torch_threads

__all__ = ["LoihiNet", "LoihiSim", "cuba_fixed_step", "decay_toward_zero", "wrap_current"]


class LoihiNet:
    """A parsed netx network (:class:`~stdl_edge.formats.netx.NetxNetwork`) prepared for simulation.

    ``layers`` are the network's :class:`~stdl_edge.formats.netx.NetxLayer` blocks; each synaptic
    block gets its kernels once, here (no tables: loading is parsing plus one transpose per layer).
    """

    def __init__(self, spec: NetxNetwork) -> None:
        self.spec = spec
        self.layers = spec.layers
        self.input_shape = spec.input_shape
        self.feed_forward = [feed_forward(layer) if layer.synaptic else None for layer in spec.layers]
        self.recurrent = [recurrent(layer) for layer in spec.layers]
        #: each block's bias_mant (0 when all zero: nothing to add) and CUBA range checks
        self.biases = [layer.bias if np.any(layer.bias) else 0 for layer in spec.layers]
        self.checks = [_range_checks(layer) for layer in spec.layers]

    @classmethod
    def from_netx(cls, path: str | Path, input_message_bits: int | None = None, dt_us: int | None = None,
                  num_layers: int | None = None, skip_layers: int = 0) -> LoihiNet:
        """Read ``path`` (:func:`~stdl_edge.formats.netx.read_netx`) and prepare it."""
        return cls(read_netx(path, input_message_bits=input_message_bits, dt_us=dt_us, num_layers=num_layers,
                             skip_layers=skip_layers))

    @property
    def latency(self) -> int:
        return self.spec.latency

    def synapse(self, layer: NetxLayer, x: np.ndarray, exact: bool = False) -> np.ndarray:
        """Integer output ``(B, *out_shape)`` int64 of a block's undelayed feed-forward synapse for
        input ``x (B, *in_shape)``; ``exact=True`` forces the int64 path (both agree bit for bit)."""
        graded = layer.input_message_bits > 0
        kernel = self.feed_forward[layer.block]
        if isinstance(kernel, DelayedDense):
            raise ValueError(f"loihi-sim: {layer.name} has delays; step it with LoihiSim")
        return _feed(layer, kernel, x if graded else (x != 0), graded, np.int64 if exact else None).astype(np.int64)


def _range_checks(layer: NetxLayer) -> tuple[bool, bool]:
    """Which of the CUBA wrap / saturation tests a block can need (:func:`cuba_needs_checks`), from
    the largest synaptic input its weights allow: ``sum |W|`` per neuron times the largest input
    payload, through the exponent, plus one per delay for the floors of Lava's per-delay shifts."""
    if layer.kind == INPUT or layer.neuron.model != CUBA_MODEL:
        return True, True
    bits = layer.input_message_bits
    total = float(np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1, dtype=np.int64).max())
    total *= 1 if bits == 0 else (1 << bits) - 1
    if layer.weight_rec is not None:
        total += float(np.abs(layer.weight_rec).sum(axis=1, dtype=np.int64).max())
    a_max = min(total * 2.0 ** layer.weight_exp, float(1 << (UV_BITS - 1))) + 2 * (layer.max_delay + 1)
    return cuba_needs_checks(layer.neuron.i_decay, layer.neuron.v_decay, a_max, float(np.abs(layer.bias).max()))


def _feed(layer: NetxLayer, kernel: DenseKernel | ConvKernel, x: np.ndarray, graded: bool, dtype: Any = None
          ) -> np.ndarray:
    """``x (B, *in_shape)`` through an undelayed synapse: ``(B, *out_shape)`` integer-valued floats,
    exponent applied."""
    if isinstance(kernel, ConvKernel):
        return kernel(x, graded, dtype)
    acc = shift(kernel(x.reshape(x.shape[0], -1), graded, dtype), layer.weight_exp)
    return acc.reshape(x.shape[0], *layer.out_shape)


# ----------------------------------------------------------------------------- the device
class LoihiSim(Device):
    """Bit-accurate Loihi simulator of a netx HDF5 network, batched over streams.

    Raw integer API (for cross-checks with Lava)::

        sim = LoihiSim.from_netx("model.net")
        out = sim.run(frames)        # (T, B, *input_shape) -> dict of (T, B, ...) arrays:
                                     # 'layer<k>' spikes (int8; SDNN graded int32), and each state
                                     # 'layer<k>/u', '/v' (CUBA, int64) or '/sigma', '/act', '/residue'

    Device API: ``reset(batch)``, ``step(frame (B, C, H, W)) -> (B, classes)`` float32 readout
    (last block's voltage in float units), ``stats()``, ``recorded()`` with ``record=True``.
    ``input_mode``: 'spike', 'graded' or 'bias' (None: what the file's first block takes; see
    :func:`devices.netx_input.resolve_input_mode`).
    """

    name = "loihi-sim"

    def __init__(self, net: LoihiNet, stream: StreamInfo | None = None, record: bool = False,
                 readout: str = "voltage", aligned: bool = True, input_mode: str | None = None,
                 threads: int | None = 1) -> None:
        if readout not in ("voltage", "spikes"):
            raise ValueError(f"loihi-sim readout={readout!r} is unknown; use 'voltage' or 'spikes'")
        self.input_mode, spec = resolve_input_mode(net.spec, input_mode)
        if spec is not net.spec:
            net = LoihiNet(spec)
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
        self._state: list[dict[str, Any]] | None = None
        self._recorded: dict[str, np.ndarray] = {}
        n = len(net.layers)
        self._spikes = np.zeros(n, dtype=np.int64)
        #: per block, how often each input element (and, for dense_rec, each own neuron) sent a
        #: non-zero: synaptic operations are these counts times the fan-outs, summed in stats()
        self._sent: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        self._steps = 0
        #: compute threads of its torch convolutions (set around each step) and numpy's BLAS (set
        #: while the device lives): 1 by default, as a batch-1 stream only oversubscribes more
        self.threads = check_threads(threads)
        limit_blas_threads(self, self.threads)

    @classmethod
    def from_netx(cls, path: str | Path, record: bool = False, input_message_bits: int | None = None,
                  dt_us: int | None = None, num_layers: int | None = None, skip_layers: int = 0,
                  **options: Any) -> LoihiSim:
        """Open a netx file; ``dt_us``: the time step of a file that records none (lava-dl's own);
        ``input_message_bits``, ``num_layers``, ``skip_layers``: netx's ``Network`` options."""
        net = LoihiNet.from_netx(path, input_message_bits=input_message_bits, dt_us=dt_us, num_layers=num_layers,
                                 skip_layers=skip_layers)
        return cls(net, record=record, **options)

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
        for layer, ff, rec in zip(self.net.layers, self.net.feed_forward, self.net.recurrent):
            st: dict[str, Any] = {"neuron": initial_state(layer.neuron, (batch, *layer.out_shape))}
            for key, syn in (("ff", ff), ("rec", rec)):
                if isinstance(syn, DelayedDense):
                    st[key] = (syn.initial(batch), 0)
                elif syn is not None:
                    st[key] = np.zeros((batch, *layer.out_shape), dtype=np.float64)
            self._state.append(st)
        self._spikes[:] = 0
        self._sent = [{} for _ in self.net.layers]
        self._steps = 0
        self._recorded = {}

    def set_reset(self, interval: int | None, offset: int = 0) -> None:
        """netx's ``reset_interval`` / ``reset_offset`` (None: never reset, plain ``Network``)."""
        if interval is not None and interval < 1:
            raise ValueError(f"loihi-sim: reset_interval={interval} must be >= 1 (or None)")
        self.reset_interval, self.reset_offset = interval, int(offset)

    @staticmethod
    def _pop(key: str, layer: NetxLayer, syn: Any, st: dict[str, Any]) -> np.ndarray:
        """What synapse ``key`` ('ff' or 'rec') sends this step (computed on earlier steps)."""
        if isinstance(syn, DelayedDense):
            out, ring, head = syn.pop(*st[key])
            st[key] = (ring, head)
            return out.reshape(out.shape[0], *layer.out_shape)
        return st[key]

    @staticmethod
    def _push(key: str, layer: NetxLayer, syn: Any, st: dict[str, Any], x: np.ndarray | None, graded: bool) -> None:
        """Synapse ``key`` takes this step's input ``x`` (None: nothing non-zero)."""
        if isinstance(syn, DelayedDense):
            if x is not None:
                ring, head = st[key]
                st[key] = (syn.push(ring, head, x, graded), head)
        else:
            st[key] = _feed(layer, syn, x, graded) if x is not None else np.zeros_like(st[key])

    def step_int(self, x: np.ndarray) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """One step on integer input ``x (B, *input_shape)``; returns ``(out, state)`` per block
        (``out``: bool spikes or int32 graded spikes; ``state``: the neuron's variables)."""
        if self._state is None:
            raise RuntimeError("loihi-sim: call reset(batch) before step()")
        out, counts = [], None
        for k in range(len(self.net.layers)):
            s, states, counts = self._block(k, x[None], keep_states=True, in_counts=counts)
            x = s[0]
            out.append((x, states[0]))
        self._steps += 1
        return out

    def _block(self, k: int, xs: np.ndarray, keep_states: bool, in_counts: np.ndarray | None = None
               ) -> tuple[np.ndarray, list[dict[str, np.ndarray]], np.ndarray | None]:
        """Block ``k`` over ``C`` steps from its current state: input ``xs (C, B, *in_shape)`` (what
        the block before sent at each step) -> ``(out (C, B, *out_shape), states, counts)``,
        ``states`` the neuron's variables after each step (empty unless ``keep_states``), ``counts``
        each neuron's spikes over the chunk where the neuron kernel counted them (else None), which
        the next block takes as ``in_counts`` (its tally of non-zero inputs, without another pass).
        Steps ``self._steps .. self._steps + C - 1``; the caller advances ``self._steps``.

        The undelayed feed-forward synapse of all ``C`` steps is one batched kernel call (time
        folded into the batch: integer sums, so exact in any grouping); it sends step ``t``'s
        input at ``t + 1``, so ``a_in[0]`` is what the last call left in the synapse and
        ``a_in[t] = W x[t - 1]``. Only the neurons, delayed and recurrent synapses step in sequence.
        """
        layer, st = self.net.layers[k], self._state[k]
        neuron, steps, batch = layer.neuron, xs.shape[0], xs.shape[1]
        rec = self.net.recurrent[k]
        ff = self.net.feed_forward[k]
        delayed = isinstance(ff, DelayedDense)
        graded = layer.input_message_bits > 0
        a_seq: Any = None
        bias: Any = 0
        if layer.kind == INPUT:
            if self.input_mode == BIAS:
                w, b = layer.transform
                bias_seq = xs * w + b
            else:  # a Delta input layer: the frame into a_in
                a_seq = xs
        else:
            xin = xs if graded or xs.dtype == bool else (xs != 0)
            folded = xin.reshape(steps * batch, *xin.shape[2:])
            if in_counts is None:
                in_counts = _count_nonzero(folded)  # one pass over the chunk's input, for the tally and the synapse
            active = bool(in_counts.any())
            if active:
                _add(self._sent[k], "ff", in_counts)
            if not delayed:
                fed = (_feed(layer, ff, folded, graded) if active
                       else np.zeros((steps * batch, *layer.out_shape), st["ff"].dtype))
                fed = fed.reshape(steps, batch, *layer.out_shape)
                a_seq = [st["ff"], *fed[:-1]]
                st["ff"] = fed[-1]
            bias = self.net.biases[k]
        cuba = neuron.model == CUBA_MODEL
        resets = self._resets(k, steps)  # only CUBA neurons reset (netx's LIFReset; SDNN ignores it)
        if cuba and layer.kind != INPUT and not delayed and rec is None:
            # the common block (CUBA behind an undelayed synapse): the whole chunk in one call
            s, u, v, us, vs, counts = cuba_fixed_chunk(a_seq[0], fed[:-1], st["neuron"]["u"], st["neuron"]["v"],
                                                       neuron.i_decay, neuron.v_decay, bias, neuron.vth,
                                                       self.net.checks[k], resets, keep_states)
            st["neuron"] = {"u": u, "v": v}
            self._spikes[k] += int(counts.sum())
            return s, ([{"u": us[t], "v": vs[t]} for t in range(steps)] if keep_states else []), counts
        outs, states = [], []
        for t in range(steps):
            if cuba and resets[t]:
                st["neuron"] = initial_state(neuron, st["neuron"]["u"].shape)  # LIFReset zeroes u, v only
            if layer.kind == INPUT:
                a_in, bias = (0, bias_seq[t]) if self.input_mode == BIAS else (a_seq[t], 0)
            elif delayed:
                a_in = self._pop("ff", layer, ff, st)
                self._push("ff", layer, ff, st, xin[t] if xin[t].any() else None, graded)
            else:
                a_in = a_seq[t]
            if rec is not None:  # the layer's own spikes of the step before (RecurrentDense)
                a_in = a_in + self._pop("rec", layer, rec, st)
            s, st["neuron"] = neuron_step(neuron, a_in, st["neuron"], bias, self.net.checks[k])
            if rec is not None:  # netx gives the recurrent synapse the block's *input* message bits
                own = (s if graded else (s != 0)) if s.any() else None
                if own is not None:
                    _add(self._sent[k], "rec", _count_nonzero(own))
                self._push("rec", layer, rec, st, own, graded)
            outs.append(s)
            if keep_states:
                states.append(st["neuron"])
        out = np.stack(outs)
        self._spikes[k] += int(np.count_nonzero(out))
        return out, states, None

    def _resets(self, k: int, steps: int) -> np.ndarray:
        """``(steps,)`` bool: where block ``k``'s neurons are zeroed before the step (netx's
        ``LIFReset``: Lava's step ``t`` (1-based) resets block ``k`` when ``t % R == (offset + 1 + k) % R``)."""
        if self.reset_interval is None:
            return np.zeros(steps, dtype=bool)
        r = self.reset_interval
        lava_steps = self._steps + 1 + np.arange(steps)
        return lava_steps % r == (self.reset_offset + 1 + k) % r

    def _input(self, frame: np.ndarray) -> np.ndarray:
        return encode_input(self.net.spec, self.input_mode, frame, "loihi-sim", spike_dtype=bool)

    def step(self, frame: np.ndarray) -> np.ndarray:
        frame = self.check_frame(frame, self._batch)
        with torch_threads(self.threads):
            out = self.step_int(self._input(frame))
        if self.record:
            self._recorded = {}
            for layer, (s, state) in zip(self.net.layers, out):
                self._recorded[layer.name] = s.astype(np.float32)
                for name, value in state.items():
                    self._recorded[f"{layer.name}/{name}"] = value.astype(np.int64)
        return self._readout(*out[-1])

    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """Readouts ``(T + latency, B, classes)`` of ``frames (T, B, C, H, W)`` from a reset state
        (:meth:`Device.run_frames`), layer by layer over chunks of steps (:func:`chunk_steps`): each
        block's feed-forward synapse runs once per chunk (:meth:`_block`), bit for bit what
        stepping gives. With ``record=True`` it steps (``recorded()`` is the last step's)."""
        if self.record:
            return super().run_frames(frames)
        frames = self.start_frames(frames)
        steps, batch = frames.shape[:2]
        total = steps + self.latency
        readouts = []
        with torch_threads(self.threads):
            size = chunk_steps(batch, max(int(np.prod(layer.out_shape)) for layer in self.net.layers))
            for t0 in range(0, total, size):
                chunk = min(size, total - t0)
                have = max(min(steps - t0, chunk), 0)
                raw = self._input(frames[t0:t0 + have].reshape(have * batch, *self.input_shape))
                xs = np.zeros((chunk, batch, *self.input_shape), raw.dtype)  # the pipeline's fill: no input
                xs[:have] = raw.reshape(have, batch, *self.input_shape)
                last, counts = len(self.net.layers) - 1, None
                for k in range(last + 1):
                    xs, states, counts = self._block(k, xs, keep_states=k == last, in_counts=counts)
                self._steps += chunk
                readouts.extend(self._readout(s, state) for s, state in zip(xs, states))
        return np.stack(readouts) if readouts else np.zeros((0, batch, self.num_classes), np.float32)

    def _readout(self, s: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        """The device's ``(B, classes)`` float32 output of the last block's spikes and state."""
        if self.readout == "spikes":
            return s.reshape(s.shape[0], -1).astype(np.float32)
        value = state[READOUT_STATE[self.net.layers[-1].neuron.model]]
        return (value.reshape(value.shape[0], -1) / self.net.layers[-1].voltage_scale).astype(np.float32)

    def run(self, frames: np.ndarray, reset_interval: int | None = None, reset_offset: int = 0
            ) -> dict[str, np.ndarray]:
        """Integer run of ``frames (T, B, *input_shape)`` from rest, as Lava runs
        ``netx.hdf5.Network(path, reset_interval=..., reset_offset=...)``; returns per-layer time
        series ``'layer<k>'`` (T, B, ...) spikes (int8, or int32 graded) and each neuron state
        ``'layer<k>/<var>'`` (int64)."""
        saved = (self.reset_interval, self.reset_offset)
        self.set_reset(reset_interval, reset_offset)
        try:
            return self._run(np.asarray(frames))
        finally:
            self.reset_interval, self.reset_offset = saved

    def _run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if frames.ndim != 2 + len(self.input_shape) or tuple(frames.shape[2:]) != self.input_shape:
            raise ValueError(f"loihi-sim run: frames have shape {frames.shape}, expected (T, B, "
                             f"{', '.join(map(str, self.input_shape))})")
        steps, batch = frames.shape[:2]
        self.reset(batch)
        series: dict[str, list[np.ndarray]] = {}
        for t in range(steps):
            out = self.step_int(self._input(frames[t]))
            for layer, (s, state) in zip(self.net.layers, out):
                series.setdefault(layer.name, []).append(s.astype(np.int8 if s.dtype == bool else np.int32))
                for name in NEURON_STATES[layer.neuron.model]:
                    series.setdefault(f"{layer.name}/{name}", []).append(state[name].astype(np.int64))
        return {k: np.stack(v) for k, v in series.items()}

    def stats(self) -> LayerStats:
        synops = np.array([sum(int(sent[key] @ fan.reshape(-1)) for key, fan in (("ff", layer.fanout),
                                                                                   ("rec", layer.fanout_rec))
                               if key in sent) for layer, sent in zip(self.net.layers, self._sent)], dtype=np.int64)
        return LayerStats(names=list(self.layer_names), spikes=self._spikes.copy(), synops=synops,
                          neurons=np.array([int(np.prod(layer.out_shape)) for layer in self.net.layers],
                                           dtype=np.int64),
                          steps=self._steps, batch=self._batch)

    def recorded(self) -> dict[str, np.ndarray]:
        return dict(self._recorded)


def _count_nonzero(x: np.ndarray) -> np.ndarray:
    """Per element of ``x (R, ...)``, how many of its ``R`` rows are non-zero: ``(prod(...),)`` int64."""
    nz = (x if x.dtype == bool else x != 0).reshape(x.shape[0], -1)
    return nz.sum(axis=0, dtype=np.int64) if nz.shape[0] > 1 else nz[0].astype(np.int64)


def _add(sent: dict[str, np.ndarray], key: str, counts: np.ndarray) -> None:
    """Add per-element non-zero counts to the tally ``sent[key]``."""
    if key in sent:
        sent[key] += counts
    else:
        sent[key] = counts.copy()


DEVICES.register("loihi-sim", LoihiSim.load, "bit-accurate Loihi fixed-point simulator of netx HDF5 (numpy)",
                 requires=("h5py",), format="netx")
