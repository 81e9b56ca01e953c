"""Device ``lava``: a netx HDF5 network run by Intel Lava (Loihi 2 simulator, or the chip).

The file is loaded with ``lava.lib.dl.netx.hdf5.Network`` and run with
``Loihi2SimCfg(select_tag='fixed_pt')``, Lava's bit-accurate Loihi 2 models (the
default tag selects the floating-point models, whose spikes differ), or with
``Loihi2HwCfg`` on Loihi 2 when ``lava-loihi`` is importable (``hardware=None``, the
default, decides by that; ``False`` forces the simulator). The hardware path cannot be
tested here (no lava-loihi, no chip).

Timing (Lava's, which loihi-sim reproduces): each synapse (``Dense``, ``Conv``)
delivers step ``t``'s input spikes to its neurons at step ``t + 1``; neurons act in the
step they receive. So a network of ``L`` synaptic layers has ``latency = L``: the
readout at step ``t`` is caused by the frame of step ``t - L``. Lava's neuron model
per step (``lava/proc/lif/models.py``, ``AbstractPyLifModelFixed``), integers::

    u[t] = wrap24(trunc0(u[t-1] * (4096 - du) / 4096) + (a_in[t] << 6))
    v[t] = clip24(trunc0(v[t-1] * (4096 - dv) / 4096) + u[t] + (bias_mant << 6))
    s[t] = v[t] > vth << 6;   v[t] = 0 where s[t]            # recorded v is after the reset

(``trunc0``: toward zero; netx maps ``iDecay -> du + 1``, ``vDecay -> dv``.) By default
(``aligned=True``, as loihi-sim's device) the network is netx's ``Network(reset_interval=
ALIGNED_INTERVAL, reset_offset=1)``, which zeroes block ``k`` once, when the sample's first
input reaches it.

Lava has no batch dimension: a batch of ``B`` streams is ``B`` independent Lava
networks, each its own runtime. Two ways to drive it:

- :meth:`LavaDevice.step` (the generic :class:`~devices.base.Device` API) feeds one frame
  per ``run(RunSteps(1))`` through a small source process whose ``frame`` Var is set
  between steps, and reads the readout (spikes through small tap processes, ``u``/``v``
  with ``Var.get``) after each step. Correct for any stream length, but every step is a
  round trip to Lava's worker processes.
- :meth:`LavaDevice.run_frames` (used by :func:`devices.base.classify`) runs a whole
  sample at once: a ``RingBuffer`` holds the frames plus ``latency`` empty ones, one
  ``run(RunSteps(T + latency))``, and ``Monitor``s read every step back at the end.

What is probed: the readout always; every layer's spikes with ``count`` (default, for
:meth:`LavaDevice.stats`) or ``record``; every layer's ``u`` and ``v`` with ``record``.
A file whose first block is netx's ``Input`` (no synapse; its ``inp`` port is left
unconnected by netx) is fed through the input neurons' ``bias_mant = weight * x + bias``,
set before every step, as lava-dl's own netx tests feed it.

Every Lava runtime this module starts is stopped: after each whole-sample run (in a
``finally``), on :meth:`LavaDevice.reset` / :meth:`LavaDevice.close`, when the device is
garbage collected, and at interpreter exit.

Long file: about 510 lines, one device: Lava's process graph, its step-by-step and whole-sample
runs, the monitors and the runtime's start and stop belong together, and half of it is the
workarounds that make Lava's runtime behave (stopping every runtime, aligned resets).
"""

from __future__ import annotations

import atexit
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.formats.netx import ALIGNED_INTERVAL, DENSE, INPUT, NEURON_STATES, READOUT_STATE, NetxLayer, \
    NetxNetwork, read_netx, resolve_netx
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats
from .lava_compat import LavaModules, import_lava
from .netx_input import BIAS, SPIKE, encode_input, resolve_input_mode

# --------------------------------------------------------------------------- Lava processes
_PROCS: dict[str, Any] = {}


def _step_processes(lava: LavaModules) -> tuple[type, type]:
    """A frame source whose ``frame`` Var is set between steps, and a tap that keeps the last spikes."""
    if _PROCS:
        return _PROCS["source"], _PROCS["tap"]
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class FrameSource(AbstractProcess):
        """Sends its ``frame`` Var (spikes, WHC) every step; the host sets it between steps."""

        def __init__(self, frame: np.ndarray) -> None:
            super().__init__(shape=frame.shape)
            self.frame = Var(shape=frame.shape, init=frame)
            self.s_out = OutPort(shape=frame.shape)

    class SpikeTap(AbstractProcess):
        """Keeps the spikes it received in the last step in its ``spikes`` Var."""

        def __init__(self, shape: tuple[int, ...]) -> None:
            super().__init__(shape=shape)
            self.a_in = InPort(shape=shape)
            self.spikes = Var(shape=shape, init=np.zeros(shape, dtype=np.int32))

    @implements(proc=FrameSource, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyFrameSource(PyLoihiProcessModel):
        frame: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self) -> None:
            self.s_out.send(self.frame)

    @implements(proc=SpikeTap, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PySpikeTap(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        spikes: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

        def run_spk(self) -> None:
            self.spikes = self.a_in.recv().astype(np.int32)

    _PROCS.update(source=FrameSource, tap=SpikeTap, models=(PyFrameSource, PySpikeTap))
    return FrameSource, SpikeTap


# live runtimes (network processes), stopped at exit if nothing stopped them before
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _stop(net: Any) -> None:
    try:
        if getattr(net, "runtime", None) is not None:
            net.stop()
    finally:
        _LIVE.discard(net)


@atexit.register
def _stop_all() -> None:
    for net in list(_LIVE):
        try:
            _stop(net)
        except Exception:  # noqa: BLE001  (best effort at exit; nothing to report to)
            pass


class _StepStream:
    """One stream stepped one frame at a time in its own Lava runtime (built at the first step)."""

    def __init__(self) -> None:
        self.net: Any = None
        self.source: Any = None
        self.taps: list[Any] = []

    def step(self, dev: LavaDevice, frame_whc: np.ndarray) -> dict[str, np.ndarray]:
        lava = dev.lava
        if self.net is None:
            source_cls, tap_cls = _step_processes(lava)
            self.net = dev._network()
            source_model, tap_model = _PROCS["models"]
            models: dict[Any, type] = {}
            if dev.bias_input:
                self.net.in_layer.neuron.bias_mant.init = dev._input_bias(frame_whc)
            else:
                self.source = source_cls(frame_whc)
                self.source.s_out.connect(dev._input_port(self.net))
                models[self.source] = source_model
            self.taps = []
            for layer, block in zip(dev.layers, self.net.layers):
                tap = None
                if "s" in dev._probes(layer):
                    tap = tap_cls(block.neuron.s_out.shape)
                    block.neuron.s_out.connect(tap.a_in)
                    models[tap] = tap_model
                self.taps.append(tap)
            _LIVE.add(self.net)
            self.net.run(condition=lava.RunSteps(num_steps=1), run_cfg=dev._run_cfg(models))
        else:
            if dev.bias_input:
                self.net.in_layer.neuron.bias_mant.set(dev._input_bias(frame_whc))
            else:
                self.source.frame.set(frame_whc)
            self.net.run(condition=lava.RunSteps(num_steps=1))
        out: dict[str, np.ndarray] = {}
        for layer, block, tap in zip(dev.layers, self.net.layers, self.taps):
            if tap is not None:
                out[layer.name] = tap.spikes.get()
            for name in dev._state_probes(layer):
                out[f"{layer.name}/{name}"] = getattr(block.neuron, name).get()
        return out

    def close(self) -> None:
        if self.net is not None:
            _stop(self.net)
            self.net = None


class LavaDevice(Device):
    """Runs a netx HDF5 file in Lava. See the module docstring for timing and batching.

    The file is parsed once by :func:`stdl_edge.formats.netx.read_netx` (the project's one netx
    reader, which loihi-sim reads with too), so layer names, shapes, input shape, stream and
    readout scale are exactly loihi-sim's: layers ``layer<k>`` (the blocks of
    ``netx.hdf5.Network.layers``);
    ``recorded()`` keys ``'layer<k>'`` (spikes, float32) and ``'layer<k>/u'``,
    ``'layer<k>/v'`` (int64), each ``(B, C, H, W)`` or ``(B, N)`` (Lava's ``(x, y, c)``
    transposed); ``step`` returns the last block's voltage in float units,
    ``v / (64 * scale)``, or its spikes with ``readout='spikes'``.
    """

    name = "lava"

    def __init__(self, net: NetxNetwork, record: bool = False, hardware: bool | None = None,
                 readout: str = "voltage", aligned: bool = True, count: bool = True, input_mode: str | None = None,
                 num_layers: int | None = None, skip_layers: int = 0) -> None:
        if readout not in ("voltage", "spikes"):
            raise ValueError(f"lava: readout={readout!r} is unknown; use 'voltage' or 'spikes'")
        self.lava = import_lava()
        if hardware and not self.lava.hardware:
            raise RuntimeError("lava: hardware=True needs lava-loihi (Intel's Loihi 2 backend, from the INRC); "
                               "it is not importable here, so open the device without hardware=True "
                               "to use the simulator")
        self.input_mode, net = resolve_input_mode(net, input_mode)
        #: netx's Network(num_layers=, skip_layers=) options (the parsed ``net`` already applies them)
        self.num_layers, self.skip_layers = num_layers, skip_layers
        self.net = net
        self.path = self.artifact = Path(net.path)
        self.record = record
        self.count = count or record
        self.hardware = self.lava.hardware if hardware is None else hardware
        self.readout = readout
        #: loihi-sim's device mode (see LoihiSim): netx's staggered reset with
        #: reset_interval=ALIGNED_INTERVAL, reset_offset=1 zeroes block k once, at the step the
        #: sample's first input reaches it; False runs the plain Network (no reset)
        self.reset_interval, self.reset_offset = (ALIGNED_INTERVAL, 1) if aligned else (None, 0)
        self.layers: list[NetxLayer] = list(net.layers)
        self.latency = net.latency
        self.input_shape = tuple(net.input_shape)
        self.num_classes = int(np.prod(self.layers[-1].out_shape))
        self.stream = net.stream
        self.bias_input = self.input_mode == BIAS  # fed through the input neurons' bias
        self._streams: list[_StepStream] = []
        self._batch = 0
        self._recorded: dict[str, np.ndarray] = {}
        self._all_steps: dict[str, np.ndarray] = {}
        self._spikes = np.zeros(len(self.layers), dtype=np.int64)
        self._synops = np.zeros(len(self.layers), dtype=np.int64)
        self._steps = 0
        # stops the step-mode runtimes when the device is garbage collected (holds no reference to it)
        self._finalizer = weakref.finalize(self, LavaDevice._close_streams, self._streams)

    @classmethod
    def load(cls, artifact: Path, record: bool = False, hardware: bool | None = None, readout: str = "voltage",
             aligned: bool = True, count: bool = True, dt_us: int | None = None, input_mode: str | None = None,
             input_message_bits: int | None = None, num_layers: int | None = None, skip_layers: int = 0,
             **_: Any) -> LavaDevice:
        """Open a ``.net`` file, or an export folder holding ``model.net`` (``RUN/export/netx``).

        record: keep every layer's spikes, ``u`` and ``v`` (see :meth:`recorded`).
        hardware: run on Loihi 2 (``Loihi2HwCfg``, needs lava-loihi) instead of the fixed_pt
            simulator; None (default): on Loihi 2 exactly when lava-loihi is importable.
        readout: 'voltage' (default) or 'spikes' of the last block.
        aligned: reset each block when the first input reaches it, as loihi-sim's device does
            (default); False runs netx's plain Network.
        count: count spikes and synaptic operations per layer for :meth:`stats` (on by default,
            as loihi-sim; implied by ``record``). It needs a spike probe on every layer, which
            makes a Lava step several times slower: ``count=False`` probes only the readout,
            the fastest way to classify with Lava.
        dt_us: the time step of a file that records none (lava-dl's own exports), for binning events.
        input_mode: 'spike', 'graded' or 'bias' (None: the file's default), as loihi-sim's
            (:mod:`devices.netx_input`).
        input_message_bits, num_layers, skip_layers: netx's ``Network`` options.
        """
        net = read_netx(resolve_netx(artifact), dt_us=dt_us, input_message_bits=input_message_bits,
                        num_layers=num_layers, skip_layers=skip_layers)
        return cls(net, record=record, hardware=hardware, readout=readout, aligned=aligned, count=count,
                   input_mode=input_mode, num_layers=num_layers, skip_layers=skip_layers)

    # ------------------------------------------------------------------ set-up
    def _probes(self, layer: NetxLayer) -> str:
        """Whether to read ``layer``'s spikes each step: 's' or ''."""
        last = layer is self.layers[-1]
        return "s" if self.record or self.count or (last and self.readout == "spikes") else ""

    def _state_probes(self, layer: NetxLayer) -> tuple[str, ...]:
        """The neuron variables to read from ``layer`` each step (Lava Var names)."""
        if self.record:
            return NEURON_STATES[layer.neuron.model]
        last = layer is self.layers[-1]
        return (READOUT_STATE[layer.neuron.model],) if last and self.readout == "voltage" else ()

    def _input_port(self, net: Any) -> Any:
        """Where a frame source connects: the network's input, or the neurons of a Delta input layer."""
        return net.in_layer.neuron.a_in if self.layers[0].kind == INPUT else net.inp

    def _run_cfg(self, models: dict[Any, type] | None = None) -> Any:
        """The run configuration; ``models`` maps our own process instances to their models.

        Lava's compiler looks a process's models up by importing every module in the
        process's folder and its package (``ProcGroupDiGraphs._find_proc_models``), which
        for processes defined here would execute the other ``devices/`` modules as
        scripts; the exception map is checked first and skips that search.
        """
        if self.hardware:
            return self.lava.Loihi2HwCfg(exception_proc_model_map=models or {})
        return self.lava.Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models or {})

    def _network(self) -> Any:
        shape = self.input_shape
        lava_shape = tuple(shape[::-1]) if len(shape) == 3 else None
        return self.lava.netx.hdf5.Network(net_config=str(self.path), input_shape=lava_shape,
                                           num_layers=self.num_layers, skip_layers=self.skip_layers,
                                           input_message_bits=self.net.input_message_bits,
                                           reset_interval=self.reset_interval, reset_offset=self.reset_offset)

    def _input_bias(self, frame_lava: np.ndarray) -> np.ndarray:
        """Bias of netx's input neurons for one frame: ``weight * x + bias`` (the block's transform).

        netx's ``Input`` block leaves its ``inp`` port unconnected; lava-dl feeds an input
        layer by writing this into ``in_layer.neuron.bias_mant`` (lava-dl's own netx tests do).
        """
        w, b = self.layers[0].transform
        return (np.asarray(frame_lava, dtype=np.int64) * int(w) + int(b)).astype(np.int32)

    def _to_lava(self, frame: np.ndarray) -> np.ndarray:
        """A frame ``(C, H, W)`` -> the network's input port: Lava's ``(x, y, c)`` int32 spikes or
        payloads (the input mode's integers), or ``(C*H*W,)`` in C order when the first block is
        dense (netx flattens ``(x, y, c)`` as ``(c, y, x)``, which is PyTorch's order)."""
        values = encode_input(self.net, self.input_mode, np.asarray(frame)[None], "lava")[0].astype(np.int32)
        if values.ndim != 3 or self.layers[0].kind == DENSE:
            return values.reshape(-1)
        return np.ascontiguousarray(values.transpose(2, 1, 0))

    @staticmethod
    def _from_lava(layer: NetxLayer, value: np.ndarray) -> np.ndarray:
        """Lava's ``(..., x, y, c)`` -> ``(..., C, H, W)`` for 3-D layers; 1-D unchanged."""
        value = np.asarray(value)
        if len(layer.out_shape) == 3:
            value = np.swapaxes(value, -1, -3)
        return value.reshape(*value.shape[: value.ndim - len(layer.out_shape)], *layer.out_shape)

    def _readout(self, series: dict[str, np.ndarray]) -> np.ndarray:
        """Last block's ``(..., B, *shape)`` spikes or voltage -> ``(..., B, classes)`` float32, as loihi-sim."""
        last = self.layers[-1]
        if self.readout == "spikes":
            value = series[last.name].astype(np.float32)
        else:
            value = series[f"{last.name}/{READOUT_STATE[last.neuron.model]}"] / last.voltage_scale
        return value.reshape(*value.shape[: value.ndim - len(last.out_shape)], -1).astype(np.float32)

    def _check_binary(self, frames: np.ndarray) -> None:
        if self.input_mode == SPIKE and frames.size and not np.isin(frames, (0.0, 1.0)).all():
            raise ValueError("lava: frames must be 0/1 spikes with input_mode='spike' (bin_mode='binary'); "
                             "for counts use input_mode='graded'")

    # ------------------------------------------------------------------ Device API
    def reset(self, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"lava: batch={batch} must be >= 1")
        self._close_streams(self._streams)
        self._streams.extend(_StepStream() for _ in range(batch))
        self._batch = batch
        self._recorded = {}
        self._all_steps = {}
        self._spikes[:] = 0
        self._synops[:] = 0
        self._steps = 0

    def step(self, frame: np.ndarray) -> np.ndarray:
        if not self._streams:
            raise RuntimeError("lava device: call reset(batch) before step()")
        frame = self.check_frame(frame, self._batch)
        self._check_binary(frame)
        try:
            per_stream = [s.step(self, self._to_lava(f)) for s, f in zip(self._streams, frame)]
        except BaseException:  # a failed step leaves no runtime behind; reset(batch) starts again
            self._close_streams(self._streams)
            raise
        merged = {k: np.stack([self._from_lava(self._layer_of(k), d[k]) for d in per_stream])
                  for k in per_stream[0]}
        self._count(frame[None], {k: v[None] for k, v in merged.items()})
        if self.record:
            self._recorded = self._typed(merged)
        return self._readout(merged)

    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """Readouts ``(T + latency, B, classes)`` of ``frames (T, B, ...)`` from a reset state.

        Each stream is one ``run(RunSteps(T + latency))`` with monitors, much faster than
        ``T + latency`` calls of :meth:`step` for long samples. Leaves no runtime open; with
        ``record=True``, ``recorded()`` holds the last step and :meth:`recorded_steps` all.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 + len(self.input_shape) or tuple(frames.shape[2:]) != self.input_shape:
            raise ValueError(f"lava: frames have shape {frames.shape}, expected (T, B, "
                             f"{', '.join(map(str, self.input_shape))})")
        self._check_binary(frames)
        steps, batch = frames.shape[:2]
        self.reset(batch)
        runs = [self._run_sample(frames[:, b]) for b in range(batch)]
        merged = {k: np.stack([r[k] for r in runs], axis=1) for k in runs[0]}  # (T + L, B, ...)
        padded = np.concatenate([frames, np.zeros((self.latency, *frames.shape[1:]), np.float32)])
        self._count(padded, merged)
        if self.record:
            self._all_steps = self._typed(merged)
            self._recorded = {k: v[-1] for k, v in self._all_steps.items()}
        return self._readout(merged)

    def _run_sample(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """One stream ``(T, ...)`` -> per layer spikes (and u, v) ``(T + latency, *shape)`` int64."""
        lava = self.lava
        total = frames.shape[0] + self.latency
        lava_frames = [self._to_lava(f) for f in frames]
        data = np.stack(lava_frames + [np.zeros_like(lava_frames[0])] * self.latency, axis=-1)
        net = self._network()
        if self.bias_input:
            net.in_layer.neuron.bias_mant.init = self._input_bias(lava_frames[0])
        else:
            source = lava.RingBuffer(data=data)
            source.s_out.connect(self._input_port(net))
        probes: list[tuple[str, NetxLayer, Any]] = []
        for layer, block in zip(self.layers, net.layers):
            targets = [(layer.name, block.neuron.s_out)] if self._probes(layer) else []
            targets += [(f"{layer.name}/{name}", getattr(block.neuron, name)) for name in self._state_probes(layer)]
            for key, target in targets:
                monitor = lava.Monitor()
                monitor.probe(target, total)
                probes.append((key, layer, monitor))
        _LIVE.add(net)
        try:
            if self.bias_input:  # the input neurons' bias changes every step: one run per step
                net.run(condition=lava.RunSteps(num_steps=1), run_cfg=self._run_cfg())
                for t in range(1, total):
                    net.in_layer.neuron.bias_mant.set(self._input_bias(data[..., t]))
                    net.run(condition=lava.RunSteps(num_steps=1))
            else:
                net.run(condition=lava.RunSteps(num_steps=total), run_cfg=self._run_cfg())
            out = {}
            for key, layer, monitor in probes:
                (values,) = (v for per_proc in monitor.get_data().values() for v in per_proc.values())
                out[key] = self._from_lava(layer, np.rint(values).astype(np.int64))
        finally:
            _stop(net)
        return out

    def _layer_of(self, key: str) -> NetxLayer:
        name = key.split("/")[0]
        return next(layer for layer in self.layers if layer.name == name)

    @staticmethod
    def _typed(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """loihi-sim's dtypes: spikes float32, states int64."""
        return {k: (v.astype(np.int64) if "/" in k else v.astype(np.float32)) for k, v in values.items()}

    def _count(self, frames: np.ndarray, series: dict[str, np.ndarray]) -> None:
        """Spikes and synaptic operations (input spikes times fan-out) of ``(T, B, ...)`` series."""
        self._steps += frames.shape[0]
        if not self.count:
            return
        x = frames
        for k, layer in enumerate(self.layers):
            if layer.synaptic:
                flat = (np.asarray(x) != 0).reshape(x.shape[0], x.shape[1], -1)
                self._synops[k] += int((flat * layer.fanout.reshape(1, 1, -1)).sum())
            x = series[layer.name]
            if layer.fanout_rec is not None:  # dense_rec: the layer's own spikes through weight_rec
                own = (x != 0).reshape(x.shape[0], x.shape[1], -1)
                self._synops[k] += int((own * layer.fanout_rec.reshape(1, 1, -1)).sum())
            self._spikes[k] += int(np.count_nonzero(x))

    def recorded(self) -> dict[str, np.ndarray]:
        return dict(self._recorded)

    def recorded_steps(self) -> dict[str, np.ndarray]:
        """After :meth:`run_frames` with ``record=True``: every step, ``(T + latency, B, ...)`` per key."""
        return dict(self._all_steps)

    def stats(self) -> LayerStats:
        """Steps, batch and neurons always; spikes and synops per layer only with ``count`` or ``record``
        (otherwise empty arrays: not counted, as for devices that do not count)."""
        empty = np.zeros(0, dtype=np.int64)
        return LayerStats(names=[layer.name for layer in self.layers],
                          spikes=self._spikes.copy() if self.count else empty,
                          synops=self._synops.copy() if self.count else empty,
                          neurons=np.array([int(np.prod(layer.out_shape)) for layer in self.layers], dtype=np.int64),
                          steps=self._steps, batch=self._batch)

    def close(self) -> None:
        """Stop every Lava runtime this device started (also done by reset, GC and at exit)."""
        self._close_streams(self._streams)

    @staticmethod
    def _close_streams(streams: list[_StepStream]) -> None:
        try:
            for s in streams:
                s.close()
        finally:
            streams.clear()

    def __enter__(self) -> LavaDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


DEVICES.register("lava", LavaDevice.load,
                 "Intel Lava: Loihi 2 bit-accurate simulator (fixed_pt), or the chip with lava-loihi",
                 requires=("lava", "h5py"), extra="lava", format="netx")
