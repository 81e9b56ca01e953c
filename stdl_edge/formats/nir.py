"""NIR, the Neuromorphic Intermediate Representation: the format's constants, writer and reader.

The reader's graph walk (nodes and edges to layers) is :mod:`stdl_edge.formats.nir_graph`;
this module keeps the format itself: constants, the neuron mapping both ways, the writer, the
file reader, :func:`load` and :func:`import_run`.

A NIR graph is continuous time; a stdl-edge network is discrete time at ``dt`` (seconds,
``dt_us * 1e-6``). The mapping is NIR's ODEs integrated by forward Euler at ``dt`` (the
convention snnTorch uses), which makes the project's CUBA neuron (:mod:`stdl_edge.neuron`)
exact. With ``a_u`` = ``current_decay``, ``a_v`` = ``voltage_decay``, ``theta`` = threshold::

    CubaLIF  tau_syn = dt / a_u, tau_mem = dt / a_v, w_in = 1 / a_u, r = 1 / a_v,
             v_leak = 0, v_threshold = theta, v_reset = 0              (a_u < 1)
    LIF      tau = dt / a_v, r = 1 / a_v, v_leak = 0, v_threshold = theta, v_reset = 0   (a_u = 1)
    IF       r = 1 / dt, v_threshold = theta, v_reset = 0              (a_u = 1, a_v = 0)
    CubaLI / LI / I: the same without threshold, for the non-spiking readout

Euler on ``tau_syn dI/dt = -I + w_in S`` and ``tau_mem dv/dt = (v_leak - v) + r I`` gives
``I[t] = (1 - a_u) I[t-1] + S[t]`` and ``v[t] = (1 - a_v) v[t-1] + I[t]``: the CUBA step, with
NIR's reset (``v = v_reset = 0`` right after a spike) being ``(1 - s[t-1])``. The reader
inverts it for any parameters: per neuron, a gain ``a_u w_in a_v r`` (CubaLIF; ``a_v r`` for
LIF, ``dt r`` for IF) and an offset ``a_v v_leak`` multiply into and add to the incoming
synapse, and a threshold that differs between neurons is divided out (the dynamics are
linear and reset to 0, so ``v / theta_i`` against 1 spikes exactly when ``v`` against
``theta_i`` does).

Layers become nodes: conv -> ``Conv2d`` + neuron; dense -> ``Affine`` (``Linear`` without a
bias) + neuron; readout -> ``Affine`` + ``LI``; ``AvgPool2d``/``SumPool2d``/``Flatten`` as
themselves; a residual block -> ``Conv2d``-neuron-``Conv2d`` plus a shortcut (identity edge or
1x1 ``Conv2d``) into one neuron node, whose inputs NIR sums. BatchNorm is folded first
(:func:`stdl_edge.quant.fold_bn`). Each node's metadata has ``source`` (the layer name); the
graph's metadata has the keys ``META_*`` below: the stream (``dt``, sensor, binning, class
names) and the input and output types.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..artifact import RunFolder, StreamInfo
from ..io import FORMAT_VERSION, atomic_path
from ..layers import AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense, SpikingResidualBlock, SumPool2d
from ..models import SpikingNet
from ..neuron import CubaParams
from ..quant import fold_bn, folded_synapse
from .nir_graph import ImportedNeuron, NeuronImporter, graph_layers, network
from .nir_graph import where as _where

FORMAT = "stdl-edge-nir"
SUFFIX = ".nir"
PIP_EXTRA = "nir"
#: the export folder's index of its files, and its kind tag
MANIFEST, MANIFEST_KIND = "manifest.json", "stdl-edge-nir"
#: graph metadata keys (values are str, int or float; lists are JSON strings)
META_FORMAT, META_VERSION = "format", "format_version"
META_DT, META_DT_US = "dt", "dt_us"  # seconds (the unit of NIR's time constants), microseconds
META_SENSOR, META_STEPS, META_BIN, META_CLASSES = "sensor_size", "num_steps", "bin_mode", "class_names"
META_INPUT, META_OUTPUT = "input_type", "output_type"
META_ROLE, META_SUBNET, META_LAYERS = "role", "subnet_index", "layers"
#: node metadata key: the SpikingNet layer the node came from
META_SOURCE = "source"
_EXACT = 1e-9  # a gain this close to 1 is 1: the float64 round trip of tau = dt / a


def _nir() -> Any:
    try:
        import nir
    except ImportError:
        raise ImportError(f"NIR needs the 'nir' package: pip install 'stdl-edge[{PIP_EXTRA}]'") from None
    return nir


# --------------------------------------------------------------------------- the neuron, both ways

def neuron_node(p: CubaParams, shape: tuple[int, ...], dt: float, source: str) -> Any:
    """The NIR neuron node of CUBA parameters ``p`` for a layer output ``shape``, at ``dt`` seconds."""
    nir = _nir()
    a_u, a_v = p.current_decay, p.voltage_decay
    if p.reset != "zero" and p.spiking:
        raise ValueError(f"layer {source}: neuron reset={p.reset!r}; NIR neurons reset to v_reset, so NIR cannot "
                         "express it; train with --reset zero, or export to ONNX")
    if a_u == 0 or (a_u < 1 and a_v == 0):
        raise ValueError(f"layer {source}: current_decay={a_u}, voltage_decay={a_v} has no NIR neuron (a "
                         "perfect integrator behind a synaptic current: tau = dt / 0); use current_decay=1")

    def full(v: float) -> np.ndarray:
        return np.full(shape, v, dtype=np.float64)

    meta, zero = {META_SOURCE: source}, full(0.0)
    syn = {"tau_syn": full(dt / a_u), "w_in": full(1 / a_u)}
    if p.spiking:
        fire = {"v_threshold": full(p.threshold), "v_reset": zero}
        if a_u == 1 and a_v == 0:
            return nir.IF(r=full(1 / dt), **fire, metadata=meta)
        if a_u == 1:
            return nir.LIF(tau=full(dt / a_v), r=full(1 / a_v), v_leak=zero, **fire, metadata=meta)
        return nir.CubaLIF(tau_mem=full(dt / a_v), r=full(1 / a_v), v_leak=zero, **syn, **fire, metadata=meta)
    if a_u == 1 and a_v == 0:
        return nir.I(r=full(1 / dt), metadata=meta)
    if a_u == 1:
        return nir.LI(tau=full(dt / a_v), r=full(1 / a_v), v_leak=zero, metadata=meta)
    return nir.CubaLI(tau_mem=full(dt / a_v), r=full(1 / a_v), v_leak=zero, **syn, metadata=meta)


def _decay(name: str, node: Any, field: str, dt: float) -> float:
    a = dt / np.asarray(getattr(node, field), dtype=np.float64)
    if a.size and not np.all(a == a.flat[0]):
        raise ValueError(f"{_where(name, node)}: {field} differs between neurons; a stdl-edge layer has one "
                         "time constant")
    a = float(a.flat[0]) if a.size else 0.0
    if not 0.0 <= a <= 1.0 + 1e-12:
        raise ValueError(f"{_where(name, node)}: {field}={dt / a:g} s is shorter than dt={dt:g} s, which forward "
                         "Euler cannot integrate; import at a smaller dt_us")
    return round(min(a, 1.0), 12)


def _array(node: Any, field: str) -> np.ndarray:
    return np.asarray(getattr(node, field), dtype=np.float64)


def _import_neuron(name: str, node: Any, dt: float) -> ImportedNeuron:
    kind = type(node).__name__
    a_u = _decay(name, node, "tau_syn", dt) if kind in ("CubaLIF", "CubaLI") else 1.0
    if kind in ("IF", "I"):
        a_v, gain = 0.0, dt * _array(node, "r")
    elif kind == "Threshold":
        a_v, gain = 1.0, np.ones_like(_array(node, "threshold"))
    else:
        a_v = _decay(name, node, "tau" if kind in ("LIF", "LI") else "tau_mem", dt)
        gain = a_v * _array(node, "r") * (a_u * _array(node, "w_in") if a_u < 1 else 1.0)
    leak = _array(node, "v_leak") if hasattr(node, "v_leak") else np.zeros_like(gain)
    if a_u < 1 and np.any(leak != 0):
        raise ValueError(f"{_where(name, node)}: v_leak != 0 with a synaptic current; the CUBA neuron adds "
                         "constant input to the current, not the voltage")
    offset = a_v * leak
    if hasattr(node, "v_reset") and np.any(_array(node, "v_reset") != 0):
        raise ValueError(f"{_where(name, node)}: v_reset != 0; stdl-edge neurons reset to 0")
    theta = math.inf
    if hasattr(node, "v_threshold") or kind == "Threshold":
        th = _array(node, "threshold" if kind == "Threshold" else "v_threshold")
        if np.any(th <= 0):
            raise ValueError(f"{_where(name, node)}: a threshold <= 0; stdl-edge thresholds are > 0")
        if np.all(th == th.flat[0]):
            theta = float(th.flat[0])
        else:  # v / theta_i against 1 spikes exactly when v against theta_i does
            gain, offset, theta = gain / th, offset / th, 1.0
    gain = np.where(np.abs(gain - 1.0) < _EXACT, 1.0, gain)
    return ImportedNeuron(CubaParams(current_decay=a_u, voltage_decay=a_v, threshold=theta), gain, offset)


#: node type -> importer of its neuron (a stdl-edge layer's neuron); NIR types missing here
#: (and not a synapse, pooling, flatten, Input or Output) are rejected by name
NEURONS: dict[str, NeuronImporter] = {
    t: _import_neuron for t in ("CubaLIF", "LIF", "IF", "CubaLI", "LI", "I", "Threshold")}


# --------------------------------------------------------------------------- writer

def _conv_node(w: torch.Tensor, b: torch.Tensor | None, stride: int, padding: int, in_shape: tuple[int, ...],
               source: str) -> Any:
    nir = _nir()
    w = w.detach().float().numpy()
    bias = np.zeros(w.shape[0], np.float32) if b is None else b.detach().float().numpy()
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=w, stride=stride, padding=padding,
                      dilation=1, groups=1, bias=bias, metadata={META_SOURCE: source})


def _cuba_nodes(key: str, name: str, layer: SpikingConv2d | SpikingDense, dt: float) -> tuple[dict[str, Any], str]:
    """The synapse (BatchNorm folded) and neuron nodes of a conv/dense layer; returns them and the neuron's key."""
    nir = _nir()
    w, b = folded_synapse(layer)
    if isinstance(layer, SpikingConv2d):
        syn = _conv_node(w, b, layer.conv.stride[0], layer.conv.padding[0], layer.in_shape, name)
    elif b is not None:
        syn = nir.Affine(weight=w.numpy(), bias=b.numpy(), metadata={META_SOURCE: name})
    else:
        syn = nir.Linear(weight=w.numpy(), metadata={META_SOURCE: name})
    neuron = neuron_node(layer.neuron, layer.out_shape, dt, name)
    nkey = f"{key}_{type(neuron).__name__.lower()}"
    return {key: syn, nkey: neuron}, nkey


def _layer_nodes(i: int, name: str, layer: Layer, dt: float
                 ) -> tuple[dict[str, Any], list[tuple[str, str]], list[str], str]:
    """``(nodes, internal edges, entry nodes, exit node)`` of one layer; the previous layer feeds every entry."""
    nir = _nir()
    key = f"{i}_{layer.kind}"
    if isinstance(layer, (SpikingConv2d, SpikingDense)):
        nodes, nkey = _cuba_nodes(key, name, layer, dt)
        return nodes, [(key, nkey)], [key], nkey
    if isinstance(layer, (AvgPool2d, SumPool2d)):
        k = np.array([layer.kernel_size] * 2)
        cls = nir.AvgPool2d if isinstance(layer, AvgPool2d) else nir.SumPool2d
        return {key: cls(kernel_size=k, stride=k, padding=np.zeros(2, np.int64), metadata={META_SOURCE: name})}, \
            [], [key], key
    if isinstance(layer, Flatten):
        node = nir.Flatten(input_type={"input": np.array(layer.in_shape)}, start_dim=0, end_dim=-1,
                           metadata={META_SOURCE: name})
        return {key: node}, [], [key], key
    if isinstance(layer, SpikingResidualBlock):
        nodes, first = _cuba_nodes(f"{key}_conv1", f"{name}.first", layer.first, dt)
        w2, b2 = folded_synapse(layer.second)
        out = neuron_node(layer.neuron, layer.out_shape, dt, name)
        conv2, nkey = f"{key}_conv2", f"{key}_{type(out).__name__.lower()}"
        nodes[conv2] = _conv_node(w2, b2, 1, layer.second.conv.padding[0], layer.second.in_shape, f"{name}.second")
        nodes[nkey] = out
        edges = [(f"{key}_conv1", first), (first, conv2), (conv2, nkey)]
        if layer.shortcut is None:
            return nodes, edges, [f"{key}_conv1", nkey], nkey  # the identity shortcut is an edge
        conv, bn = layer.shortcut[0], (layer.shortcut[1] if len(layer.shortcut) > 1 else None)
        with torch.no_grad():
            ws, bs = fold_bn(conv.weight.detach().float(), None if conv.bias is None else conv.bias.detach(), bn)
        nodes[f"{key}_shortcut"] = _conv_node(ws, bs, conv.stride[0], 0, layer.in_shape, f"{name}.shortcut")
        return nodes, edges + [(f"{key}_shortcut", nkey)], [f"{key}_conv1", f"{key}_shortcut"], nkey
    if layer.kind == "dense_rec":
        raise ValueError(f"layer {name} (dense_rec): NIR export does not write recurrent layers; export the run "
                         "to onnx or netx (dense_rec), or train it with a plain dense layer")
    raise ValueError(f"layer {name} ({type(layer).__name__}) has no NIR node; NIR export knows conv, dense, "
                     "readout, average/sum pooling, flatten and residual blocks")


def stream_metadata(stream: StreamInfo) -> dict[str, Any]:
    """Graph metadata of a stream: ``dt`` (s), ``dt_us``, sensor, steps, binning, class names."""
    return {META_DT: stream.dt_us * 1e-6, META_DT_US: int(stream.dt_us), META_SENSOR: json.dumps(list(stream.sensor_size)),
            META_STEPS: int(stream.num_steps), META_BIN: stream.bin_mode,
            META_CLASSES: json.dumps(list(stream.class_names))}


def to_nir(net: SpikingNet, stream: StreamInfo, start: int = 0, stop: int | None = None, role: str = "model",
           subnet: int = -1) -> Any:
    """The NIR graph of layers ``start:stop`` of ``net`` (BatchNorm folded), with its metadata."""
    nir = _nir()
    stop = len(net.layers) if stop is None else stop
    dt = stream.dt_us * 1e-6
    layers, names = list(net.layers)[start:stop], net.layer_names()[start:stop]
    in_shape, out_layer = tuple(layers[0].in_shape), layers[-1]
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for offset, (layer, name) in enumerate(zip(layers, names)):
        layer_nodes, inner, entries, exit_ = _layer_nodes(start + offset, name, layer, dt)
        nodes.update(layer_nodes)
        edges += [(prev, e) for e in entries] + inner
        prev = exit_
    nodes["output"] = nir.Output(output_type={"output": np.array(out_layer.out_shape)})
    edges.append((prev, "output"))
    source = ("binary" if stream.bin_mode == "binary" else "count") + " event frames" if start == 0 else \
        f"spikes of layer {net.layer_names()[start - 1]}"
    meta = {META_FORMAT: FORMAT, META_VERSION: FORMAT_VERSION, **stream_metadata(stream),
            META_INPUT: f"{source}, shape (C, H, W) = {list(in_shape)}, one frame per dt",
            META_OUTPUT: ("readout voltage per step (logits; the prediction is its mean over time)"
                          if isinstance(out_layer, Readout) else "spikes") + f", shape {list(out_layer.out_shape)}",
            META_ROLE: role, META_SUBNET: int(subnet), META_LAYERS: json.dumps([start, stop])}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write(path: str | Path, graph: Any) -> Path:
    """Write ``graph`` as a NIR HDF5 file (``nir.write``), atomically."""
    nir = _nir()
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path


# --------------------------------------------------------------------------- reader

def read(path: str | Path) -> Any:
    """The NIR graph in ``path`` (``nir.read``, type-checked); a clear error if it is not one."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a .nir file (nir.write, or stdl-edge export --to nir)")
    try:
        return nir.read(path)
    except (OSError, KeyError, AssertionError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a readable NIR graph ({type(e).__name__}: {e})") from None


class NirImport(NamedTuple):
    """What :func:`load` gives: the network, and the stream when the graph records one."""

    model: SpikingNet
    stream: StreamInfo | None


def _meta(meta: dict[str, Any], key: str) -> Any:
    v = meta.get(key)
    return v.item() if isinstance(v, np.generic) else v


def stream_from_metadata(meta: dict[str, Any]) -> StreamInfo | None:
    """The stream a stdl-edge graph records (None for a graph without our keys)."""
    if _meta(meta, META_FORMAT) != FORMAT:
        return None
    return StreamInfo(sensor_size=tuple(json.loads(_meta(meta, META_SENSOR))), dt_us=int(_meta(meta, META_DT_US)),
                      num_steps=int(_meta(meta, META_STEPS)), bin_mode=str(_meta(meta, META_BIN)),
                      class_names=tuple(json.loads(_meta(meta, META_CLASSES))))


def _time_step_us(meta: dict[str, Any], dt_us: int | None) -> int:
    if dt_us is not None:
        return int(dt_us)
    if _meta(meta, META_DT_US) is not None:
        return int(_meta(meta, META_DT_US))
    if _meta(meta, META_DT) is not None:
        return int(round(float(_meta(meta, META_DT)) * 1e6))
    raise ValueError("the NIR graph records no time step: NIR is continuous time, so give the simulation step "
                     "(dt_us=..., --dt-us; snnTorch writes its graphs for dt = 1e-4 s = 100 us)")


def from_nir(graph: Any, dt_us: int | None = None, input_shape: tuple[int, int, int] | None = None) -> NirImport:
    """The :class:`SpikingNet` of a NIR graph (a chain of layers, residual blocks as branches).

    ``dt_us`` is the simulation step (default: the graph's ``dt_us``/``dt`` metadata);
    ``input_shape`` (C, H, W) is needed when the graph reads a flat vector: a Flatten goes first.
    Unsupported nodes raise one line naming the node and its type (the walk:
    :func:`stdl_edge.formats.nir_graph.graph_layers`).
    """
    meta = dict(graph.metadata or {})
    step_us = _time_step_us(meta, dt_us)
    return NirImport(network(graph_layers(graph, step_us * 1e-6, input_shape, NEURONS)), _stream(meta, step_us))


def _stream(meta: dict[str, Any], step_us: int) -> StreamInfo | None:
    stream = stream_from_metadata(meta)
    if stream is None or stream.dt_us == step_us:
        return stream
    return StreamInfo(stream.sensor_size, step_us, stream.num_steps, stream.bin_mode, stream.class_names)


def load(path: str | Path, dt_us: int | None = None, input_shape: tuple[int, int, int] | None = None) -> NirImport:
    """``(model, stream)`` of the NIR file ``path`` (see :func:`from_nir`); ``stream`` is None
    unless the graph was written by stdl-edge."""
    return from_nir(read(path), dt_us, input_shape)


def import_run(path: str | Path, out: str | Path, dt_us: int | None = None, num_steps: int | None = None,
               input_shape: tuple[int, int, int] | None = None, class_names: tuple[str, ...] = (),
               bin_mode: str | None = None) -> Path:
    """Import the NIR file ``path`` into a run folder ``out`` (``stdl-edge import``); returns ``out``.

    The stream comes from the graph's metadata where stdl-edge wrote it; the arguments fill in
    or override it (``num_steps`` is needed for a graph from elsewhere; the sensor is the
    input's (W, H, C); class names default to the output indices).
    """
    graph = read(path)
    model, stream = from_nir(graph, dt_us, input_shape)
    c, h, w = model.input_shape
    if stream is None:
        if num_steps is None:
            raise ValueError(f"{path} records no stream (it was not written by stdl-edge); give num_steps (--steps), "
                             "the time steps per sample")
        stream = StreamInfo((w, h, c), _time_step_us(dict(graph.metadata or {}), dt_us), num_steps)
    names = tuple(class_names) or stream.class_names or tuple(str(i) for i in range(model.num_classes))
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for {model.num_classes} outputs")
    stream = StreamInfo(stream.sensor_size, stream.dt_us, num_steps or stream.num_steps, bin_mode or stream.bin_mode,
                        names)
    return RunFolder(out).save(model, stream, extra={"imported_from": {"format": "nir", "file": str(path)}})
