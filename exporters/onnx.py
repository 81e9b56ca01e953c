"""ONNX export of a trained run: the whole model, each STDL subnetwork and each auxiliary head.

(Long file: about 440 lines: the graph building (BatchNorm folding, state flattening, tracing, chain
composition) is one pipeline; the format's names, metadata and manifest are
:mod:`stdl_edge.formats.onnx`.)

Every file is a **step graph**: one time step of a slice of layers with the neuron state
passed in and out explicitly, so the host runs the time loop and any stream length works::

    x (B, *in_shape), state_in.<layer>.<u|v|s> (B, *out_shape)  ->  y (B, *out), state_out.<...>

``u`` is the synaptic current, ``v`` the voltage and ``s`` the last spike of a CUBA layer
(see :mod:`stdl_edge.neuron`); a residual block has ``<layer>.inner.<u|v|s>`` for its first
convolution and ``<layer>.<u|v|s>`` for its output. The batch dimension is dynamic.
On request a fixed-``T`` **sequence graph** ``x (T, B, C, H, W) -> y (B, classes)`` (the mean
readout over time) and ``y_seq (T, B, classes)`` is written for the whole model.

BatchNorm is folded into the preceding convolution or linear layer (eval statistics)
before export. The Heaviside is a plain ``Greater`` + ``Cast``. Each file records the
stream (``dt_us``, sensor size, binning), neuron parameters, class names, its place in the
chain, its input/output/state names and each state's layer kind in ``metadata_props``;
``manifest.json`` lists the chain. The names, keys and encodings are
:mod:`stdl_edge.formats.onnx`, which the onnxruntime device reads with. Files are written
atomically (:mod:`stdl_edge.io`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

import stdl_edge
from stdl_edge.artifact import RunFolder, StreamInfo, TrainedRun
from stdl_edge.formats.onnx import (INPUT, OPSET, OUTPUT, SEQUENCE, SEQUENCE_OUTPUT, STATE_FIELDS, GraphMetadata,
                                    MANIFEST, Manifest, SequenceEntry, StateSpec, StepEntry, write_metadata)
from stdl_edge.formats.export_record import export_folder, file_digests, new_export_id
from stdl_edge.io import atomic_path
from stdl_edge.layers import Layer, ResidualState, SpikingConv2d, SpikingDense, SpikingResidualBlock
from stdl_edge.models import SpikingNet
from stdl_edge.neuron import CubaState
from stdl_edge.quant import fold_bn
from stdl_edge.registry import EXPORTERS


# --------------------------------------------------------------------------- the run

def load_run_parts(run_folder: str | Path) -> TrainedRun:
    """Load a run folder (:meth:`RunFolder.load`) and check its boundaries. Bare model folders give K = 1."""
    parts = RunFolder(run_folder).load()
    _check_boundaries(parts)
    return parts


def _check_boundaries(parts: TrainedRun) -> None:
    n = len(parts.model.layers)
    bounds = parts.boundaries
    if not bounds or bounds[0][0] != 0 or bounds[-1][1] != n or any(
            a[1] != b[0] or a[0] >= a[1] for a, b in zip(bounds, bounds[1:] + [(n, n + 1)])):
        raise ValueError(f"subnetwork boundaries {bounds} do not cover layers 0..{n} contiguously; "
                         "the run folder is inconsistent (retrain or fix model.json)")
    if len(parts.aux_heads) > len(bounds):
        raise ValueError(f"{len(parts.aux_heads)} auxiliary heads for {len(bounds)} subnetworks")


# --------------------------------------------------------------------------- BatchNorm folding

def _fold_into(synapse: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Conv2d | nn.Linear:
    """``synapse`` (changed in place, a bias added) with ``bn`` folded in by the project's one
    formula, :func:`stdl_edge.quant.fold_bn` (``W' = W g``, ``b' = (b - mean) g + beta``)."""
    weight, bias = fold_bn(synapse.weight, synapse.bias, bn)
    synapse.weight = nn.Parameter(weight)
    synapse.bias = nn.Parameter(bias)
    return synapse


def _fold_layer(layer: nn.Module) -> None:
    if isinstance(layer, (SpikingConv2d, SpikingDense)) and layer.bn is not None:
        _fold_into(layer.synapse, layer.bn)
        layer.bn = None
    elif isinstance(layer, SpikingResidualBlock):
        _fold_layer(layer.first)
        _fold_layer(layer.second)
        if isinstance(layer.shortcut, nn.Sequential) and len(layer.shortcut) == 2:
            conv, bn = layer.shortcut
            layer.shortcut = _fold_into(conv, bn)


@torch.no_grad()
def fold_batchnorm(model: SpikingNet) -> SpikingNet:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into its synapse.

    The caller's model is not changed. Outputs equal the original's up to float rounding.
    """
    folded = copy.deepcopy(model).eval()
    for layer in folded.layers:
        _fold_layer(layer)
    return folded


# --------------------------------------------------------------------------- state naming

def state_specs(net: SpikingNet, start: int = 0, stop: int | None = None) -> list[StateSpec]:
    """The state tensors of layers ``start:stop`` (shapes per sample); a residual block has its
    first convolution's ``<layer>.inner.<u|v|s>`` before its own ``<layer>.<u|v|s>``."""
    stop = len(net.layers) if stop is None else stop
    names = net.layer_names()
    specs = []
    for i in range(start, stop):
        layer = net.layers[i]
        if not layer.stateful:
            continue
        parts = [(True, layer.first.out_shape)] if isinstance(layer, SpikingResidualBlock) else []
        for inner, shape in [*parts, (False, layer.out_shape)]:
            specs += [StateSpec.of(names[i], f, shape, layer.kind, inner) for f in STATE_FIELDS]
    return specs


def _flatten(layers: list[Layer], states: list[Any]) -> list[torch.Tensor]:
    flat: list[torch.Tensor] = []
    for layer, st in zip(layers, states):
        if isinstance(st, ResidualState):
            flat += [*st.inner, *st.out]
        elif isinstance(st, CubaState):
            flat += list(st)
        elif layer.stateful:
            raise TypeError(f"cannot export the state of layer kind {layer.kind!r}")
    return flat


def _unflatten(layers: list[Layer], flat: tuple[torch.Tensor, ...]) -> list[Any]:
    states: list[Any] = []
    i = 0
    for layer in layers:
        if isinstance(layer, SpikingResidualBlock):
            states.append(ResidualState(CubaState(*flat[i:i + 3]), CubaState(*flat[i + 3:i + 6])))
            i += 6
        elif layer.stateful:
            states.append(CubaState(*flat[i:i + 3]))
            i += 3
        else:
            states.append(())
    return states


class StepGraph(nn.Module):
    """``(x, *state_in) -> (y, *state_out)`` for layers ``start:stop`` of ``net`` (one step)."""

    def __init__(self, net: SpikingNet, start: int, stop: int) -> None:
        super().__init__()
        self.net, self.start, self.stop = net, start, stop
        self.slice = list(net.layers[start:stop])

    def forward(self, x: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, states = self.net.step(x, _unflatten(self.slice, flat), self.start, self.stop)
        return (y, *_flatten(self.slice, states))


class SequenceGraph(nn.Module):
    """``x (T, B, C, H, W) -> (y (B, classes) mean readout, y_seq (T, B, classes))``, T fixed."""

    def __init__(self, net: SpikingNet, steps: int) -> None:
        super().__init__()
        self.net, self.steps = net, steps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = [layer.init_state(x.shape[1], x.device) for layer in self.net.layers]
        outs = []
        for t in range(self.steps):
            y, states = self.net.step(x[t], states)
            outs.append(y)
        seq = torch.stack(outs)
        return seq.mean(0), seq


# --------------------------------------------------------------------------- the torch -> ONNX step

@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's known, harmless notices (narrowly, by message and module).

    - torch.onnx logs that torchvision ops are skipped when torchvision is absent;
    - torch.export's pytree ``LeafSpec`` FutureWarning (internal to torch, not our code);
    - the note that several inputs share the one ``batch`` axis (that is what we ask for).
    """
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used", category=UserWarning)
            yield
    finally:
        logger.setLevel(old_level)


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
             output_names: list[str], batch_axes: list[int]) -> Any:
    """Export with the torch.export-based (dynamo) exporter; returns the ``onnx.ModelProto``.

    ``batch_axes[i]`` is the batch axis of positional input ``i`` (dynamic, named ``batch``);
    inputs after the first are the module's ``*args`` (the states).
    """
    module = module.eval()
    batch = torch.export.Dim("batch")
    specs = [{axis: batch} for axis in batch_axes]
    dynamic = (specs[0], tuple(specs[1:])) if len(specs) > 1 else (specs[0],)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic,
                                    opset_version=OPSET, optimize=True, verbose=False, external_data=False)
    return program.model_proto


def _finish(proto: Any, path: Path, metadata: GraphMetadata) -> Path:
    """Attach ``metadata_props``, check the graph, write ``path`` atomically."""
    import onnx

    write_metadata(proto, metadata)
    proto.producer_name = "stdl-edge"
    proto.producer_version = stdl_edge.__version__
    proto.doc_string = f"stdl-edge {metadata.graph} graph ({metadata.role})"
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


def _step_entry(net: SpikingNet, start: int, stop: int, file: str, **place: int) -> StepEntry:
    """The step graph of layers ``start:stop``: names, shapes, states (``place``: index, follows)."""
    layers = net.layers[start:stop]
    return StepEntry(file, (start, stop), tuple(net.layer_names()[start:stop]), tuple(layers[0].in_shape),
                     tuple(layers[-1].out_shape), tuple(state_specs(net, start, stop)), **place)


def trace_step(net: SpikingNet, start: int, stop: int, example_batch: int = 2) -> Any:
    """The step graph of layers ``start:stop`` of ``net`` (BatchNorm already folded), as a ModelProto."""
    entry = _step_entry(net, start, stop, "")
    x = torch.zeros(example_batch, *entry.input_shape)
    states = [torch.zeros(example_batch, *spec.shape) for spec in entry.states]
    return _to_onnx(StepGraph(net, start, stop), (x, *states), entry.inputs, entry.outputs,
                    [0] * len(entry.inputs))


def compose_chain(protos: list[Any]) -> Any:
    """One step graph from the step graphs of consecutive subnetworks.

    Subnetwork ``k``'s ``y`` feeds subnetwork ``k + 1``'s ``x`` (renamed ``chain.<k>``);
    every other internal name gets the prefix ``s<k>/``; the ``state_in.*``/``state_out.*``
    names are unique already (they carry the global layer index) and stay as they are.
    The result computes exactly what running the files one after another computes, with
    the same kernels, so the chain and the whole model give bit-identical outputs.
    """
    import onnx
    from onnx import helper

    if len(protos) == 1:
        return protos[0]
    last = len(protos) - 1
    nodes, inits, value_info, inputs, outputs, states_out = [], [], [], [], [], []
    for k, proto in enumerate(protos):
        g = proto.graph
        if proto.functions or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                  for n in g.node for a in n.attribute):
            raise ValueError("cannot compose step graphs with functions or subgraphs; "
                             "export the whole model with compose=False")
        io = {v.name for v in g.input if v.name.startswith("state_in.")}
        io |= {v.name for v in g.output if v.name.startswith("state_out.")}

        def rename(name: str, k: int = k, io: set[str] = io) -> str:
            if not name or name in io:
                return name
            if name == "x":
                return "x" if k == 0 else f"chain.{k - 1}"
            if name == "y":
                return "y" if k == last else f"chain.{k}"
            return f"s{k}/{name}"

        for node in g.node:
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = f"s{k}/{node.name}"
            new.input[:] = [rename(n) for n in node.input]
            new.output[:] = [rename(n) for n in node.output]
            nodes.append(new)
        for group, target in ((g.initializer, inits), (g.value_info, value_info)):
            for item in group:
                new = type(item)()
                new.CopyFrom(item)
                new.name = rename(item.name)
                target.append(new)
        for v in g.input:
            if k == 0 or v.name.startswith("state_in."):
                inputs.append(v)
        for v in g.output:
            if v.name.startswith("state_out."):
                states_out.append(v)
            elif k == last:
                outputs.append(v)
            else:  # the boundary tensor: keep its shape information
                new = onnx.ValueInfoProto()
                new.CopyFrom(v)
                new.name = rename(v.name)
                value_info.append(new)
    graph = helper.make_graph(nodes, "stdl_edge_step", inputs, outputs + states_out, inits, value_info=value_info)
    model = helper.make_model(graph, opset_imports=list(protos[0].opset_import), ir_version=protos[0].ir_version)
    return model


def export_sequence(net: SpikingNet, steps: int, path: Path, stream: StreamInfo, example_batch: int = 2
                    ) -> SequenceEntry:
    """Write the fixed-``steps`` sequence graph of the whole ``net`` (BatchNorm already folded)."""
    if steps < 1:
        raise ValueError(f"sequence steps={steps} must be >= 1")
    x = torch.zeros(steps, example_batch, *net.input_shape)
    entry = SequenceEntry(path.name, steps, tuple(net.input_shape), net.num_classes)
    inputs, outputs = [INPUT], [OUTPUT, SEQUENCE_OUTPUT]
    proto = _to_onnx(SequenceGraph(net, steps), (x,), inputs, outputs, [1])
    _finish(proto, path, GraphMetadata(stream, "model", -1, SEQUENCE, steps=steps, layer_names=tuple(net.layer_names()),
                                       input_names=tuple(inputs), output_names=tuple(outputs),
                                       neuron=net.config.neuron.to_dict(), model=net.config.to_dict()))
    return entry


# --------------------------------------------------------------------------- the exporter

def export(run_folder: Path, out_dir: Path | None = None, *, sequence_steps: int | None = None,
           subnets: bool = True, aux: bool = True, compose: bool = True, **options: Any) -> list[Path]:
    """Export a run to ONNX. Default ``out_dir`` = RUN/export/onnx. Writes:

    - ``model.onnx``: the whole model's step graph;
    - ``subnet<k>.onnx`` for each STDL subnetwork (K > 1) and ``aux<k>.onnx`` for the
      auxiliary head that follows subnetwork ``k``;
    - ``model_seq<T>.onnx`` if ``sequence_steps = T`` is given;
    - ``manifest.json`` (last in the returned list), written last, with an ``export_id`` and each
      file's SHA-256 (:mod:`stdl_edge.formats.export_record`).

    The folder is written beside ``out_dir`` and renamed into place whole: a failed or killed
    export leaves the previous export (or nothing), never a mix.

    With ``compose=True`` (default) each subnetwork is traced once and ``model.onnx`` is
    their composition (:func:`compose_chain`), which halves the export time; with
    ``compose=False`` the whole model is traced on its own.
    """
    if options:
        raise ValueError(f"unknown ONNX export option(s) {', '.join(sorted(options))}; "
                         "known: sequence_steps, subnets, aux, compose")
    run_folder = Path(run_folder)
    out_dir = Path(out_dir) if out_dir is not None else RunFolder(run_folder).export_dir("onnx")
    parts = load_run_parts(run_folder)
    with export_folder(out_dir, (MANIFEST,)) as tmp:
        names = _write_graphs(parts, tmp, new_export_id(RunFolder(run_folder).weights_file), sequence_steps,
                              subnets, aux, compose)
    return [out_dir / name for name in names]


def _write_graphs(parts: TrainedRun, out_dir: Path, export_id: str, sequence_steps: int | None, subnets: bool,
                  aux: bool, compose: bool) -> list[str]:
    """Write every graph of :func:`export` into ``out_dir``, then ``manifest.json`` (listing each
    file's SHA-256); returns the file names, ``model.onnx`` first and the manifest last."""
    net = fold_batchnorm(parts.model)
    stream, n, num_subnets = parts.stream, len(net.layers), len(parts.boundaries)
    configs = {"neuron": net.config.neuron.to_dict(), "model": net.config.to_dict()}
    written: list[str] = []

    chain: list[StepEntry] = []
    protos: list[Any] = []
    if subnets and num_subnets > 1:
        for k, (start, stop) in enumerate(parts.boundaries):
            entry = _step_entry(net, start, stop, f"subnet{k}.onnx", index=k)
            proto = trace_step(net, start, stop)
            protos.append(proto)
            file_proto = type(proto)()
            file_proto.CopyFrom(proto)
            _finish(file_proto, out_dir / entry.file,
                    GraphMetadata.of_step(entry, stream, "subnet", k, num_subnets=num_subnets, **configs))
            chain.append(entry)
            written.append(entry.file)
    whole = _step_entry(net, 0, n, "model.onnx")
    whole_proto = compose_chain(protos) if (compose and protos) else trace_step(net, 0, n)
    _finish(whole_proto, out_dir / whole.file,
            GraphMetadata.of_step(whole, stream, "model", -1, num_subnets=num_subnets, **configs))
    written.insert(0, whole.file)
    if not chain:  # K = 1 (or subnets not wanted): the chain is the whole model
        chain.append(replace(whole, index=0))
    heads: list[StepEntry] = []
    if aux:
        for k, head in enumerate(parts.aux_heads):
            head_net = fold_batchnorm(head)
            entry = _step_entry(head_net, 0, len(head_net.layers), f"aux{k}.onnx", index=k, follows=k)
            _finish(trace_step(head_net, 0, len(head_net.layers)), out_dir / entry.file,
                    GraphMetadata.of_step(entry, stream, "aux", k, follows=k, neuron=head_net.config.neuron.to_dict(),
                                          model=head_net.config.to_dict()))
            heads.append(entry)
            written.append(entry.file)
    sequence = None
    if sequence_steps:
        sequence = export_sequence(net, int(sequence_steps), out_dir / f"model_seq{int(sequence_steps)}.onnx", stream)
        written.append(sequence.file)
    manifest = Manifest(stream, whole, tuple(chain), tuple(net.layer_names()), net.num_classes, tuple(net.input_shape),
                        model=configs["model"], aux_heads=tuple(heads), sequence=sequence,
                        exporter="torch.onnx.export(dynamo=True)", export_id=export_id,
                        files=file_digests(out_dir, written))
    written.append(manifest.write(out_dir).name)
    return written


EXPORTERS.register("onnx", export, "ONNX step graphs (whole model, STDL subnetworks, aux heads) + manifest",
                   requires=("onnx", "onnxscript"), extra="onnx")
