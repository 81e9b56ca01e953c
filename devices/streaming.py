"""Streaming inference: a network on an event stream, with latency, activity and energy.

::

    from stdl_edge.devices import open_device
    from stdl_edge.sources import open_source
    from stdl_edge.devices.streaming import run_events

    dev = open_device("loihi-sim", "runs/demo/export/netx/model.net")
    src = open_source("recording.raw", fit=dev.stream.sensor[:2])
    result = run_events(dev, src, window_steps=50)       # or per_sample=True on a labelled source
    result.predictions                                    # one dict per window / sample
    result.summary()                                      # latency, activity, energy (JSON-able)

Windows: events are binned at the artifact's ``dt`` as they stream in
(:func:`stdl_edge.devices.stream_windows`); each window of ``window_steps`` steps is
classified from a reset state. Per sample (labelled sources such as ``digits-dvs:test``):
each sample is binned with :func:`stdl_edge.binning.bin_events` over the artifact's
``num_steps`` and classified with :func:`stdl_edge.devices.classify`, in batches, and the
accuracy is reported.

Energy estimate: ``E = synops * e_synop + spikes * e_spike``. Defaults are Loihi's published
figures (Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
IEEE Micro 38(1):82-99, 2018, Table 2): 23.6 pJ per synaptic spike operation (the minimum)
and 1.7 pJ per within-tile spike. Where a device does not count synaptic operations, they
are estimated as (spikes into the layer) x (the layer's mean fan-out) from the model; the
result says so (``synops_estimated``).
"""

from __future__ import annotations

import math

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from stdl_edge.binning import bin_events

from .base import Device, StreamCounts, TimeSpan, classify, read_counted, stream_windows

#: the longest window ``run`` classifies at once (its frames are held in memory: one window)
MAX_WINDOW_STEPS = 100_000


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, in picojoules.

    pj_per_synop: one synaptic operation (a spike delivered over one synapse).
      Default 23.6 pJ: Loihi, minimum synaptic spike operation (Davies et al. 2018, Table 2).
    pj_per_spike: one spike sent by a neuron. Default 1.7 pJ: Loihi within-tile spike energy
      (same table).
    """

    pj_per_synop: float = 23.6
    pj_per_spike: float = 1.7

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in (self.pj_per_synop, self.pj_per_spike)):
            raise ValueError(f"energy per operation must be a finite number >= 0 pJ, got {self.pj_per_synop} "
                             f"pJ/synop and {self.pj_per_spike} pJ/spike (--pj-synop, --pj-spike)")


class _Meter:
    """Wraps a device: times every ``step``, counts input spikes, and adds up the device's
    stats over the resets that :func:`classify` does (one per window or batch)."""

    def __init__(self, device: Any, keep_steps: int = 0) -> None:
        self.device = device
        self.latencies: list[float] = []  # seconds per step (batch of B)
        self.input_spikes = 0
        self.names: list[str] = []
        self.spikes: np.ndarray | None = None
        self.synops: np.ndarray | None = None
        self.neurons: np.ndarray | None = None
        self.steps = 0  # input steps x batch (sample-steps; not the latency padding)
        self.keep_steps = keep_steps  # for plots: frames and readouts of the first window
        self.kept_frames: list[np.ndarray] = []
        self.kept_outputs: list[np.ndarray] = []
        self.kept_layers: list[dict[str, np.ndarray]] = []
        self._open = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.device, name)

    def _collect(self) -> None:
        if not self._open:
            return
        s = self.device.stats()
        if len(s.spikes):
            if self.spikes is None:
                self.names = list(s.names)
                self.spikes = np.zeros(len(s.spikes), np.int64)
                self.synops = np.zeros(len(s.synops), np.int64) if len(s.synops) else None
                self.neurons = np.asarray(s.neurons, np.int64) if len(s.neurons) else None
            self.spikes += s.spikes
            if self.synops is not None and len(s.synops):
                self.synops += s.synops
        # input steps: the device also stepped ``latency`` empty frames to drain its pipeline, whose
        # spikes belong to the input steps before them, so rates are per input step on every device
        self.steps += max(s.steps - int(getattr(self.device, "latency", 0)), 0) * max(s.batch, 1)
        self._open = False

    def reset(self, batch: int) -> None:
        self._collect()
        self.device.reset(batch)
        self._open = True
        self._batch = batch

    def step(self, frame: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        y = self.device.step(frame)
        self.latencies.append(time.perf_counter() - t0)
        self.input_spikes += int(np.count_nonzero(frame))
        if len(self.kept_frames) < self.keep_steps:
            self.kept_frames.append(np.asarray(frame[0]).copy())
            self.kept_outputs.append(np.asarray(y[0]).copy())
            rec = self.device.recorded() if hasattr(self.device, "recorded") else {}
            self.kept_layers.append({k: np.asarray(v[0]).ravel().copy() for k, v in rec.items() if "/" not in k})
        return y

    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """What :func:`classify` calls: step by step through this meter (while it keeps steps for
        plots, or where the device only steps), else the device's own ``run_frames`` (whole
        windows at once: lava, loihi-sim and torch), the per-step latency then the mean over the call."""
        stepping = getattr(type(self.device), "run_frames", Device.run_frames) is Device.run_frames
        if stepping or len(self.kept_frames) < self.keep_steps:
            return Device.run_frames(self, frames)
        self._collect()
        t0 = time.perf_counter()
        out = self.device.run_frames(frames)
        per_step = (time.perf_counter() - t0) / max(len(out), 1)
        self.latencies.extend([per_step] * len(out))
        self.input_spikes += int(np.count_nonzero(frames))
        self._open = True
        return out

    def finish(self) -> None:
        self._collect()


@dataclass
class RunResult:
    """What :func:`run_events` measured. Times in seconds, stream time in microseconds."""

    mode: str  # 'window' or 'sample'
    predictions: list[dict[str, Any]]
    events: int
    stream_us: int
    wall_s: float
    latencies_s: np.ndarray
    batch: int
    layer_names: list[str]
    spikes: np.ndarray  # per layer, summed over everything run
    synops: np.ndarray  # per layer
    synops_estimated: bool
    synops_counted: bool  # False: the device counts none and no model was at hand to estimate them
    neurons: np.ndarray | None
    input_spikes: int
    sample_steps: int  # time steps x streams run
    energy: EnergyModel = field(default_factory=EnergyModel)
    accuracy: float | None = None
    kept_frames: list[np.ndarray] = field(default_factory=list)
    kept_outputs: list[np.ndarray] = field(default_factory=list)
    kept_layers: list[dict[str, np.ndarray]] = field(default_factory=list)
    exits: dict[int, int] | None = None  # early exit: samples per exit (K - 1 = the full model)
    counts: StreamCounts | None = None  # window mode: events read, kept, dropped; the stream's time span

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def realtime_factor(self) -> float:
        """Stream time / wall time: > 1 means faster than the sensor produces events."""
        return (self.stream_us / 1e6) / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def energy_uj(self) -> float | None:
        """Estimated energy of everything run, microjoules (None without synaptic-op counts)."""
        if not self.synops_counted:
            return None
        pj = float(self.synops.sum()) * self.energy.pj_per_synop + float(self.spikes.sum()) * self.energy.pj_per_spike
        return pj * 1e-6

    def latency_ms(self) -> dict[str, float]:
        lat = self.latencies_s * 1e3
        if not len(lat):
            return {}
        return {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "mean": float(lat.mean())}

    def _stream_counts(self) -> dict[str, Any]:
        c = self.counts
        if c is None:
            return {}
        return {"events_read": c.read, "events_kept": c.kept,
                "dropped": {"outside_crop": c.outside_crop, "outside_span": c.outside_span},
                "t_first_us": c.first_t_us, "t_last_us": c.last_t_us, "t_origin_us": c.origin_us}

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``--out`` writes last, with key ``"summary"``)."""
        per_step = max(self.sample_steps, 1)
        return {
            "mode": self.mode, "events": self.events, "stream_s": self.stream_us / 1e6, "wall_s": self.wall_s,
            "events_per_s": self.events_per_s, "realtime_factor": self.realtime_factor, "batch": self.batch,
            "accuracy": self.accuracy, "step_latency_ms": self.latency_ms(),
            "layers": [{"name": n, "spikes": int(s), "synops": int(o),
                        "rate": (float(s) / (float(self.neurons[i]) * per_step)
                                 if self.neurons is not None and self.neurons[i] else None)}
                       for i, (n, s, o) in enumerate(zip(self.layer_names, self.spikes, self.synops))],
            "synops_estimated": self.synops_estimated, "input_spikes": self.input_spikes,
            "synops_counted": self.synops_counted, **self._stream_counts(),
            "energy": {"uJ_total": self.energy_uj,
                       "uJ_per_sample_step": None if self.energy_uj is None else self.energy_uj / per_step,
                       "pJ_per_synop": self.energy.pj_per_synop, "pJ_per_spike": self.energy.pj_per_spike,
                       "source": "Davies et al., IEEE Micro 38(1):82-99, 2018, Table 2 (Loihi)"},
        }


def _fanout_estimate(device: Any, spikes: np.ndarray, input_spikes: int) -> np.ndarray | None:
    """Synaptic operations per layer: spikes into layer i x its mean fan-out (a recurrent layer adds
    its own spikes x its width), for devices with a torch model (``device.model``); None where the
    model is not at hand."""
    model = getattr(device, "model", None)
    layers = getattr(model, "layers", None)
    if layers is None or len(layers) != len(spikes):
        return None
    synops = np.zeros(len(layers), np.int64)
    source = input_spikes
    for i, layer in enumerate(layers):
        fan = 0.0
        conv = getattr(layer, "conv", None)
        linear = getattr(layer, "linear", None)
        if conv is not None:
            s = conv.stride[0] * conv.stride[1]
            fan = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] / s
        elif linear is not None:
            fan = linear.out_features
        elif layer.kind == "resblock":
            fan = float(np.prod(layer.out_shape)) / max(float(np.prod(layer.in_shape)), 1.0) * 9 * 2
        synops[i] = int(round(source * fan))
        if getattr(layer, "recurrent", None) is not None:  # dense_rec: its own spikes back through W_rec
            synops[i] += int(spikes[i]) * layer.recurrent.out_features
        if layer.spiking:
            source = int(spikes[i])
    return synops


def run_events(device: Any, source: Any, *, window_steps: int | None = None, per_sample: bool | None = None,
               limit: int | None = None, batch: int = 16, energy: EnergyModel = EnergyModel(),
               on_prediction: Callable[[dict[str, Any]], None] | None = None,
               on_progress: Callable[[int, int, float], None] | None = None, keep_steps: int = 0,
               early_exit: float | None = None, span: TimeSpan = TimeSpan(), skip_empty: bool = False,
               reset_after_gap_us: int | None = None) -> RunResult:
    """Run ``source`` (an :class:`~stdl_edge.sources.EventSource`) on ``device``.

    window_steps: classify consecutive windows of this many time steps (any source).
    per_sample: classify each labelled sample (default when the source has labels and no
      window is given). batch: samples per device batch in this mode.
    limit: at most this many windows or samples.
    on_prediction(record): called with each prediction as it is made (JSON-able dict).
    on_progress(events, stream_us, wall_s): called after each window or batch.
    keep_steps: keep this many steps of input frames, readouts and recorded layers for plots.
    early_exit: per-sample mode on a device with auxiliary heads (onnxruntime, ``chain=True``):
      a sample leaves at the first head whose softmax confidence reaches this threshold.
    span, skip_empty, reset_after_gap_us: window mode, see :func:`~stdl_edge.devices.stream_windows`
      (time 0 is the first event; each record has ``t_us`` from it and ``t_abs_us`` on the file's
      clock). The result's ``counts`` say how many events were read, kept and dropped, and why.
    """
    stream = device.stream
    bin_spec = device.bin_spec  # a clear error, naming the file, when the artifact records no time step
    sensor = tuple(source.sensor_size[:2])
    if sensor != tuple(stream.sensor[:2]):
        raise ValueError(f"the source gives a {sensor[0]}x{sensor[1]} sensor but the artifact expects "
                         f"{stream.sensor[0]}x{stream.sensor[1]}; crop/downsample the source (--crop, "
                         "--downsample, or fit=)")
    if per_sample is None:
        per_sample = bool(getattr(source, "labelled", False)) and window_steps is None
    if per_sample and not getattr(source, "labelled", False):
        raise ValueError(f"{source.name} has no labels: per-sample runs need a data set (NAME:SPLIT); "
                         "use --window-ms for recordings")
    if not per_sample and (window_steps is None or not 1 <= window_steps <= MAX_WINDOW_STEPS):
        raise ValueError(f"window_steps={window_steps} must be 1..{MAX_WINDOW_STEPS:,} steps of {stream.dt_us} us "
                         f"(e.g. --window-ms {stream.dt_us * stream.num_steps / 1000:g} for the training "
                         "sample length)")
    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    if early_exit is not None:
        if not per_sample:
            raise ValueError("early exit classifies whole samples: use it on a labelled source (NAME:SPLIT)")
        if not hasattr(device, "classify_early_exit"):
            raise ValueError(f"early exit needs the onnxruntime device on an export with auxiliary heads, "
                             f"not {getattr(device, 'name', type(device).__name__)}")
    exits: dict[int, int] = {}
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1")
    meter = _Meter(device, keep_steps)
    names = list(stream.class_names) or [str(i) for i in range(device.num_classes)]
    predictions: list[dict[str, Any]] = []
    counted = {"events": 0, "t_end": 0}
    stream_counts: StreamCounts | None = None  # window mode

    def emit(record: dict[str, Any]) -> None:
        predictions.append(record)
        if on_prediction is not None:
            on_prediction(record)

    start = time.perf_counter()
    if per_sample:
        correct = 0
        pending: list[tuple[np.ndarray, int]] = []

        def run_batch(items: list[tuple[np.ndarray, int]]) -> None:
            nonlocal correct
            frames = np.stack([bin_events(ev, stream.sensor, bin_spec, num_steps=stream.num_steps)
                               for ev, _ in items], axis=1)  # (T, B, 2, H, W)
            if early_exit is None:
                scores, taken = classify(meter, frames), None
            else:
                t0 = time.perf_counter()
                res = device.classify_early_exit(frames, early_exit)
                meter.latencies.append((time.perf_counter() - t0) / frames.shape[0])  # per step, whole batch
                scores, taken = res.logits, res.exits
            for i, ((ev, label), s) in enumerate(zip(items, scores)):
                k = int(np.argmax(s))
                correct += int(k == label)
                record = {"sample": len(predictions), "label": int(label), "prediction": k, "class": names[k],
                          "correct": bool(k == label), "events": int(len(ev)),
                          "scores": [round(float(v), 6) for v in s]}
                if taken is not None:
                    record["exit"] = int(taken[i])
                    exits[int(taken[i])] = exits.get(int(taken[i]), 0) + 1
                emit(record)
            counted["events"] += sum(len(ev) for ev, _ in items)
            counted["t_end"] += len(items) * stream.num_steps * stream.dt_us
            if on_progress is not None:
                on_progress(counted["events"], counted["t_end"], time.perf_counter() - start)

        for i, item in enumerate(source.samples()):
            if limit is not None and i >= limit:
                break
            pending.append(item)
            if len(pending) == batch:
                run_batch(pending)
                pending = []
        if pending:
            run_batch(pending)
        accuracy = correct / len(predictions) if predictions else None
        run_batch_size = batch
    else:
        stream_counts = StreamCounts()
        for w in stream_windows(meter, read_counted(source, stream_counts), window_steps, span=span,
                                skip_empty=skip_empty, reset_after_gap_us=reset_after_gap_us,
                                counts=stream_counts):
            k = int(np.argmax(w.scores))
            emit({"window": w.index, "t_us": w.t_us, "t_end_us": w.t_end_us, "t_abs_us": w.t_abs_us,
                  "events": w.events, "prediction": k, "class": names[k],
                  "scores": [round(float(v), 6) for v in w.scores]}
                 | ({"empty": True} if w.empty else {}) | ({"restarted": True} if w.restarted else {}))
            if on_progress is not None:
                on_progress(stream_counts.read, stream_counts.span_us, time.perf_counter() - start)
            if limit is not None and len(predictions) >= limit:
                break
        counted["events"], counted["t_end"] = stream_counts.kept, stream_counts.span_us
        accuracy = None
        run_batch_size = 1
    wall = time.perf_counter() - start
    meter.finish()
    n_layers = len(meter.names)
    spikes = meter.spikes if meter.spikes is not None else np.zeros(n_layers, np.int64)
    estimated = False
    have_synops = True
    synops = meter.synops
    if synops is None or not synops.any():
        est = _fanout_estimate(device, spikes, meter.input_spikes)
        estimated = est is not None
        have_synops = est is not None
        synops = est if est is not None else np.zeros(n_layers, np.int64)
    neurons = meter.neurons
    if neurons is None and getattr(getattr(device, "model", None), "layers", None) is not None:
        layers = device.model.layers
        if len(layers) == n_layers:
            neurons = np.array([int(np.prod(layer.out_shape)) if layer.spiking else 0
                                for layer in layers])
    return RunResult(mode="sample" if per_sample else "window", predictions=predictions, events=counted["events"],
                     stream_us=counted["t_end"], wall_s=wall, latencies_s=np.asarray(meter.latencies),
                     batch=run_batch_size, layer_names=meter.names, spikes=spikes, synops=synops,
                     synops_estimated=estimated, synops_counted=have_synops, neurons=neurons, input_spikes=meter.input_spikes,
                     sample_steps=meter.steps, energy=energy, accuracy=accuracy, kept_frames=meter.kept_frames,
                     exits=exits if early_exit is not None else None,
                     counts=stream_counts,
                     kept_outputs=meter.kept_outputs, kept_layers=meter.kept_layers)
