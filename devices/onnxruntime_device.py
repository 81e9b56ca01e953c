"""The onnxruntime device: runs the ONNX step graphs written by ``stdl-edge export --to onnx``.

The artifact is a single step graph (``model.onnx``, ``subnet1.onnx``, ...) or an export
folder / its ``manifest.json``. State lives on the host between steps (numpy arrays fed as
``state_in.*`` and read back from ``state_out.*``), so streams of any length run on a
fixed graph::

    dev = open_device("onnxruntime", "runs/demo/export/onnx", chain=True, record=True)
    dev.reset(batch=4)
    y = dev.step(frame)              # (4, 2, H, W) float32 -> (4, classes)
    dev.recorded()["0.conv"]         # that step's spikes of layer 0, (4, C, H', W')

``chain=True`` runs the STDL subnetwork files one after another (the chain equals the
whole model); :meth:`OnnxRuntimeDevice.classify_early_exit` adds the auxiliary heads and
lets confident samples stop after an early subnetwork.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.artifact import StreamInfo
from stdl_edge.formats.onnx import MANIFEST, STATE_IN, GraphMetadata, StateSpec, read_manifest
from stdl_edge.registry import DEVICES

from .base import Device, LayerStats

class StepSession:
    """One ONNX step graph: ``x, state_in.* -> y, state_out.*`` with checked inputs.

    intra_op_threads / inter_op_threads: onnxruntime thread pools (0 = onnxruntime's default,
    1 is best for batch 1 on small edge CPUs).
    """

    def __init__(self, path: str | Path, intra_op_threads: int = 1, inter_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} does not exist; export it with "
                                    "`stdl-edge export RUN --to onnx`")
        for name, value in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
            if int(value) < 0:
                raise ValueError(f"{name}={value} must be >= 0 (0 = onnxruntime's default)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path} is not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        #: the file's stdl-edge metadata (None for a step graph written elsewhere)
        self.metadata: GraphMetadata | None = GraphMetadata.from_props(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        self.input_shape = tuple(int(d) for d in inputs[0].shape[1:])
        kinds = {s.name: s.kind for s in self.metadata.states} if self.metadata is not None else {}
        #: the state tensors in graph order, with their layer's kind from the metadata (readout or not)
        self.states = [StateSpec.parse(name, tuple(int(d) for d in i.shape[1:]), kinds.get(name, ""))
                       for i in inputs if i.name.startswith(STATE_IN) for name in [i.name[len(STATE_IN):]]]
        self.state_names = [s.name for s in self.states]
        self.state_shapes = {s.name: s.shape for s in self.states}
        outputs = self.session.get_outputs()
        self.output_name = outputs[0].name
        self.output_shape = tuple(int(d) for d in outputs[0].shape[1:]) if outputs[0].shape else ()
        self._out_names = [o.name for o in outputs]
        self._in_names = [s.input_name for s in self.states]
        missing = [s for s in self.states if s.output_name not in self._out_names]
        if missing:
            raise ValueError(f"{self.path}: {missing[0].input_name} has no matching output {missing[0].output_name}; "
                             "the file was not written by stdl-edge")
        self.layer_names: list[str] = list(self.metadata.layer_names) if self.metadata is not None else []

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """Resting state for ``batch`` streams: ``{state name: zeros (batch, *shape)}``."""
        return {n: np.zeros((batch, *self.state_shapes[n]), dtype=np.float32) for n in self.state_names}

    def _check(self, name: str, value: Any, batch: int | None, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{self.path.name}: input {name!r} must be a numpy array, got {type(value).__name__}")
        if value.dtype != np.float32:
            raise ValueError(f"{self.path.name}: input {name!r} has dtype {value.dtype}; the graph takes "
                             f"float32 (use .astype(np.float32))")
        expected = (batch if batch is not None else (value.shape[0] if value.ndim else -1), *shape)
        if value.shape != expected:
            raise ValueError(f"{self.path.name}: input {name!r} has shape {value.shape}, expected "
                             f"{('B',) + shape if batch is None else expected} (batch first)")
        return value

    def run(self, x: np.ndarray, state: dict[str, np.ndarray], check_state: bool = True
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One step: returns ``(y (B, *output_shape), new state)``; inputs are checked first.

        ``check_state=False`` skips the checks of ``x`` and the state, for a device that fed
        a checked frame and the state this session returned itself.
        """
        feed = {self.input_name: x}
        if check_state:
            x = self._check(self.input_name, x, None, self.input_shape)
            batch = x.shape[0]
            missing = [n for n in self.state_names if n not in state]
            if missing:
                raise ValueError(f"{self.path.name}: missing state input 'state_in.{missing[0]}' "
                                 f"({len(missing)} of {len(self.state_names)} missing); start from zero_state(batch)")
            for n in self.state_names:
                feed[f"state_in.{n}"] = self._check(f"state_in.{n}", state[n], batch, self.state_shapes[n])
        else:
            for n, key in zip(self.state_names, self._in_names):
                feed[key] = state[n]
        outs = self.session.run(self._out_names, feed)
        return outs[0], dict(zip(self.state_names, outs[1:]))


def _count_spikes(s: np.ndarray) -> int:
    """Non-zero elements of a spike state (0.0 / 1.0 from ``Greater`` + ``Cast``), counted on its
    bits: ``count_nonzero`` of float32 is 5-10x slower than of the same bits as int32 (a -0.0,
    which no Cast of a comparison makes, would count)."""
    return int(np.count_nonzero(s.view(np.int32) if s.dtype == np.float32 and s.flags.c_contiguous else s))


def _recorded_from_state(specs: list[StateSpec], state: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> None:
    """Layer outputs and states keyed like the torch device: ``<layer>``, ``<layer>/u``, ``<layer>/v``
    (a residual block's first convolution: ``<layer>/inner``, ...); a readout's output is its voltage."""
    for spec in specs:
        value = state[spec.name]
        key = f"{spec.layer}/inner" if spec.inner else spec.layer
        if spec.field_name != "s":
            out[f"{key}/{spec.field_name}"] = value
        if spec.field_name == ("v" if spec.readout else "s"):
            out[key] = value


@dataclass
class EarlyExitResult:
    """Result of :meth:`OnnxRuntimeDevice.classify_early_exit` for a batch.

    logits: ``(B, classes)`` time-averaged readout of the head each sample exited at.
    exits: ``(B,)`` index of that head: ``k < K - 1`` = auxiliary head after subnetwork k,
        ``K - 1`` = the full model.
    confidence: ``(B,)`` max softmax probability at the exit.
    """

    logits: np.ndarray
    exits: np.ndarray
    confidence: np.ndarray


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxRuntimeDevice(Device):
    """Runs an ONNX export with onnxruntime on the CPU; see the module docstring."""

    name = "onnxruntime"
    latency = 0

    def __init__(self, stages: list[StepSession], stream: StreamInfo, aux: dict[int, StepSession] | None = None,
                 record: bool = False, exit_threshold: float | None = None) -> None:
        if not stages:
            raise ValueError("onnxruntime device: no step graphs to run")
        for a, b in zip(stages, stages[1:]):
            if a.output_shape != b.input_shape:
                raise ValueError(f"chain broken: {a.path.name} gives {a.output_shape}, "
                                 f"{b.path.name} expects {b.input_shape}")
        if exit_threshold is not None and not 0.0 < exit_threshold <= 1.0:
            raise ValueError(f"exit_threshold={exit_threshold} must be in (0, 1] (a softmax probability)")
        self.stages = stages
        self.aux = dict(aux or {})
        self.stream = stream
        self.record = record
        self.exit_threshold = exit_threshold
        self.input_shape = tuple(stages[0].input_shape)
        self.num_classes = int(stages[-1].output_shape[0])
        self.layer_names = [n for s in stages for n in s.layer_names]
        self._states: list[dict[str, np.ndarray]] | None = None
        self._batch = 0
        self._steps = 0
        self._recorded: dict[str, np.ndarray] = {}
        #: per stage, the spike states of its spiking (non-readout) layers: '<layer>.s', '<layer>.inner.s'
        self._spike_states = [[s for s in st.states if s.field_name == "s" and not s.readout] for st in stages]
        self._spikes: dict[str, int] = {s.name: 0 for specs in self._spike_states for s in specs}
        self.last_exits: np.ndarray | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, artifact: Path, chain: bool = False, record: bool = False, intra_op_threads: int = 1,
             inter_op_threads: int = 1, exit_threshold: float | None = None, **_: Any) -> OnnxRuntimeDevice:
        """Open a step graph (``*.onnx``), an export folder or its ``manifest.json``.

        chain: run the subnetwork files in sequence instead of the whole-model file.
        exit_threshold: softmax confidence at which :meth:`classify_early_exit` stops a sample.
        """
        artifact = Path(artifact)
        threads = {"intra_op_threads": intra_op_threads, "inter_op_threads": inter_op_threads}
        if artifact.is_dir() or artifact.suffix == ".json":
            manifest = read_manifest(artifact)
            folder = artifact if artifact.is_dir() else artifact.parent
            stages = [StepSession(folder / e.file, **threads) for e in (manifest.chain if chain else [manifest.whole])]
            aux = {int(h.follows): StepSession(folder / h.file, **threads) for h in manifest.aux_heads}
            return cls(stages, manifest.stream, aux, record=record, exit_threshold=exit_threshold)
        if artifact.suffix != ".onnx":
            raise ValueError(f"onnxruntime device: {artifact} is neither a .onnx file, an export folder "
                             f"nor a {MANIFEST}")
        stage = StepSession(artifact, **threads)
        if stage.metadata is None:
            raise ValueError(f"{artifact} has no stdl-edge metadata (dt_us, sensor_size); "
                             "export it with `stdl-edge export`")
        return cls([stage], stage.metadata.stream, record=record, exit_threshold=exit_threshold)

    # ------------------------------------------------------------------ stepping

    def reset(self, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"batch={batch} must be >= 1")
        self._batch = batch
        self._states = [s.zero_state(batch) for s in self.stages]
        self._steps = 0
        self._recorded = {}
        self._spikes = dict.fromkeys(self._spikes, 0)

    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._states is None:
            raise RuntimeError("onnxruntime device: call reset(batch) before step()")
        x = np.ascontiguousarray(self.check_frame(frame, self._batch))
        recorded: dict[str, np.ndarray] = {}
        for k, stage in enumerate(self.stages):
            # the state is this device's own (zero_state, then the session's outputs): no re-check
            x, self._states[k] = stage.run(x, self._states[k], check_state=False)
            if self.record:
                _recorded_from_state(stage.states, self._states[k], recorded)
                if k < len(self.stages) - 1 and stage.layer_names:  # a subnetwork's output
                    recorded.setdefault(stage.layer_names[-1], x)
        for k, specs in enumerate(self._spike_states):
            state = self._states[k]
            for spec in specs:
                self._spikes[spec.name] += _count_spikes(state[spec.name])
        self._recorded = recorded
        self._steps += 1
        return x

    def recorded(self) -> dict[str, np.ndarray]:
        return dict(self._recorded)

    def stats(self) -> LayerStats:
        """Spikes per layer since ``reset``, over all layers as the torch device lists them
        (0 for stateless layers and the readout; a residual block counts its output spikes)."""
        outer = {s.layer: self._spikes[s.name] for specs in self._spike_states for s in specs if not s.inner}
        names = self.layer_names or list(outer)
        spikes = np.array([outer.get(n, 0) for n in names], dtype=np.int64)
        return LayerStats(names=list(names), spikes=spikes, steps=self._steps, batch=self._batch)

    # ------------------------------------------------------------------ early exit

    def classify_early_exit(self, frames: np.ndarray, threshold: float | None = None) -> EarlyExitResult:
        """Classify ``frames (T, B, C, H, W)`` subnetwork by subnetwork, stopping confident samples.

        Subnetwork ``k`` runs over the whole window for the samples still in play; its
        auxiliary head's time-averaged logits give a softmax confidence, and samples whose
        confidence reaches ``threshold`` exit there. The rest continue with subnetwork ``k + 1``
        (its input is subnetwork ``k``'s output sequence, kept for those samples only). The
        last subnetwork is the full model. Needs a manifest opened with ``chain=True``.
        """
        threshold = self.exit_threshold if threshold is None else threshold
        if threshold is None:
            raise ValueError("early exit needs a confidence threshold: pass threshold= or open the device "
                             "with exit_threshold=")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold={threshold} must be in (0, 1] (a softmax probability)")
        if len(self.stages) == 1 and self.aux:
            raise ValueError("early exit runs the subnetwork chain: open the manifest with chain=True")
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 5:
            raise ValueError(f"frames must be (T, B, C, H, W), got shape {frames.shape}")
        steps, batch = frames.shape[:2]
        for t in range(steps):
            self.check_frame(frames[t], batch)
        last = len(self.stages) - 1
        logits = np.zeros((batch, self.num_classes), dtype=np.float32)
        exits = np.full(batch, last, dtype=np.int64)
        conf = np.zeros(batch, dtype=np.float32)
        active = np.arange(batch)
        seq = frames
        for k, stage in enumerate(self.stages):
            head = self.aux.get(k) if k < last else None
            state = stage.zero_state(len(active))
            head_state = head.zero_state(len(active)) if head is not None else None
            outs = []
            total = np.zeros((len(active), self.num_classes), dtype=np.float64)
            for t in range(steps):
                y, state = stage.run(np.ascontiguousarray(seq[t]), state)
                if k < last:
                    outs.append(y)
                    if head is not None:
                        z, head_state = head.run(y, head_state)
                        total += z
                else:
                    total += y
            mean = (total / max(steps, 1)).astype(np.float32)
            p = _softmax(mean).max(axis=-1)
            if k == last:
                logits[active], conf[active] = mean, p
                break
            if head is None:
                seq = np.stack(outs)
                continue
            done = p >= threshold
            logits[active[done]], conf[active[done]], exits[active[done]] = mean[done], p[done], k
            active = active[~done]
            if len(active) == 0:
                break
            seq = np.stack(outs)[:, ~done]
        self.last_exits = exits
        return EarlyExitResult(logits, exits, conf)


DEVICES.register("onnxruntime", OnnxRuntimeDevice.load,
                 "ONNX step graphs on onnxruntime (CPU; subnetwork chain, early exit)",
                 requires=("onnxruntime",), extra="onnx", format="onnx")
