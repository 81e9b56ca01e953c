"""NIR, the Neuromorphic Intermediate Representation: the format's constants, writer and reader.

(Long file: about 600 lines, over the project's 400 on purpose: one artifact format is one module, its
writer and its reader side by side, sharing the neuron mapping below; the reader's graph
walk, a third of it, could move to a ``formats/nir_graph.py`` if it grows. See docs/nir.md.)

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from ..artifact import RunFolder, StreamInfo
from ..io import FORMAT_VERSION, atomic_path
from ..layers import (AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense, SpikingResidualBlock,
                      SumPool2d)
from ..layerspec import layer_spec
from ..models import ModelConfig, SpikingNet
from ..neuron import CubaParams
from ..quant import fold_bn, folded_synapse

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


@dataclass(frozen=True)
class ImportedNeuron:
    """A NIR neuron node as a CUBA neuron: ``I_ours = gain * (synaptic input) + offset`` per neuron.

    params: the layer's CUBA parameters (one per layer); spiking is ``params.spiking``.
    gain, offset: arrays of the node's shape.
    """

    params: CubaParams
    gain: np.ndarray
    offset: np.ndarray


def _where(name: str, node: Any) -> str:
    return f"node {name!r} ({type(node).__name__})"


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
NEURONS: dict[str, Callable[[str, Any, float], ImportedNeuron]] = {
    t: _import_neuron for t in ("CubaLIF", "LIF", "IF", "CubaLI", "LI", "I", "Threshold")}
SYNAPSES = ("Conv2d", "Affine", "Linear", "Scale")
STATELESS = ("Flatten", "AvgPool2d", "SumPool2d")


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


@dataclass
class _Synapse:
    """A conv or dense synapse read from nodes, before its neuron's gain is folded in."""

    kind: str  # 'conv' | 'dense'
    weight: np.ndarray  # (O, I, k, k) | (O, I)
    bias: np.ndarray  # (O,)
    stride: int = 1
    padding: int = 0


def _synapse(chain: list[tuple[str, Any]], shape: tuple[int, ...]) -> tuple[_Synapse, tuple[int, ...]]:
    """Fold ``[Scale] (Conv2d | Affine | Linear) [Scale]`` into one synapse; returns it and its output shape."""
    core = [(n, x) for n, x in chain if type(x).__name__ != "Scale"]
    if len(core) != 1:
        names = ", ".join(f"{n!r} ({type(x).__name__})" for n, x in chain) or "nothing"
        raise ValueError(f"nodes {names} before a neuron: stdl-edge layers have exactly one conv or affine synapse")
    name, node = core[0]
    where = _where(name, node)
    if type(node).__name__ == "Conv2d":
        w = np.asarray(node.weight, np.float64)
        pad, stride = node.padding, np.atleast_1d(node.stride)
        if isinstance(pad, str):
            pad = 0 if pad == "valid" else (w.shape[2] // 2 if w.shape[2] % 2 and np.all(stride == 1) else None)
        pad = np.atleast_1d(pad) if pad is not None else None
        if (pad is None or node.groups != 1 or np.any(np.atleast_1d(node.dilation) != 1) or w.shape[2] != w.shape[3]
                or len(set(stride.tolist())) != 1 or len(set(pad.tolist())) != 1):
            raise ValueError(f"{where}: only square, ungrouped, undilated convolutions with one stride and padding "
                             "import")
        if len(shape) != 3 or shape[0] != w.shape[1]:
            raise ValueError(f"{where}: reads {w.shape[1]} channels, gets {shape}")
        syn = _Synapse("conv", w, np.asarray(node.bias, np.float64), int(stride[0]), int(pad[0]))
        out = (w.shape[0], *[(s + 2 * syn.padding - w.shape[2]) // syn.stride + 1 for s in shape[1:]])
    else:
        w = np.asarray(node.weight, np.float64)
        if w.ndim != 2 or shape != (w.shape[1],):
            raise ValueError(f"{where}: weight {w.shape} does not read the input {shape} (a map needs a Flatten first)")
        bias = np.asarray(node.bias, np.float64) if hasattr(node, "bias") else np.zeros(w.shape[0])
        syn, out = _Synapse("dense", w, bias), (w.shape[0],)
    before = chain.index((name, node))
    for i, (sname, s) in enumerate(chain):
        scale = np.asarray(s.scale, np.float64) if i != before else None
        if scale is None:
            continue
        per = _per_channel(sname, s, scale, shape if i < before else out)
        if i < before:  # on the input: its columns (conv: input channels)
            syn.weight = syn.weight * per.reshape(1, -1, *([1] * (syn.weight.ndim - 2)))
        else:  # on the output: its rows and the bias
            syn.weight, syn.bias = syn.weight * per.reshape(-1, *([1] * (syn.weight.ndim - 1))), syn.bias * per
    return syn, out


def _per_channel(name: str, node: Any, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` of ``shape`` as one value per channel (per neuron for a vector); an error if they vary in a channel."""
    values = np.broadcast_to(values, shape).reshape(shape[0], -1)
    if not np.all(values == values[:, :1]):
        raise ValueError(f"{_where(name, node)}: its per-neuron values differ inside a channel; a conv layer can "
                         "only scale whole channels")
    return values[:, 0]


def _fold(syn: _Synapse, neuron: ImportedNeuron, name: str, node: Any, out: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with the neuron's gain and offset folded in (one value per output channel)."""
    gain, offset = _per_channel(name, node, neuron.gain, out), _per_channel(name, node, neuron.offset, out)
    return syn.weight * gain.reshape(-1, *([1] * (syn.weight.ndim - 1))), syn.bias * gain + offset


def _set(module: torch.nn.Module, w: np.ndarray, b: np.ndarray | None) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
        if b is not None:
            module.bias.copy_(torch.from_numpy(b))


def _neuron_layer(chain: list[tuple[str, Any]], name: str, node: Any, shape: tuple[int, ...], dt: float) -> Layer:
    syn, out = _synapse(chain, shape)
    neuron = NEURONS[type(node).__name__](name, node, dt)
    w, b = _fold(syn, neuron, name, node, out)
    bias = bool(np.any(b != 0))
    if syn.kind == "conv":
        if not neuron.params.spiking:
            raise ValueError(f"{_where(name, node)}: a non-spiking conv layer; stdl-edge's non-spiking layer is "
                             "the dense readout")
        layer: Layer = SpikingConv2d(shape, w.shape[0], w.shape[2], syn.stride, syn.padding, bias=bias,
                                     neuron=neuron.params)
    elif neuron.params.spiking:
        layer = SpikingDense(w.shape[1], w.shape[0], bias=bias, neuron=neuron.params)
    else:
        layer = Readout(w.shape[1], w.shape[0], bias=bias, neuron=neuron.params)
    _set(layer.synapse, w, b if bias else None)
    return layer


def _stateless_layer(name: str, node: Any, shape: tuple[int, ...]) -> Layer:
    kind = type(node).__name__
    if kind == "Flatten":
        if node.start_dim != 0 or node.end_dim not in (-1, len(shape) - 1):
            raise ValueError(f"{_where(name, node)}: start_dim={node.start_dim}, end_dim={node.end_dim}; only a "
                             "flatten of the whole (C, H, W) map (start_dim=0, end_dim=-1) imports")
        return Flatten(shape)
    k, s, p = (np.atleast_1d(np.asarray(getattr(node, f))) for f in ("kernel_size", "stride", "padding"))
    if len(set(k.tolist())) != 1 or not np.array_equal(np.broadcast_to(s, k.shape), k) or np.any(p != 0):
        raise ValueError(f"{_where(name, node)}: only square pooling with stride = kernel and no padding imports")
    return (AvgPool2d if kind == "AvgPool2d" else SumPool2d)(shape, int(k[0]))


def _residual(branch_at: str, graph: Any, succ: dict[str, list[str]], pred: dict[str, list[str]],
              shape: tuple[int, ...], dt: float) -> tuple[SpikingResidualBlock, str]:
    """The residual block whose two branches leave ``branch_at``; returns it and its output neuron's node."""
    paths = []
    for start in succ[branch_at]:
        path, cur = [], start
        while len(pred[cur]) == 1 and len(succ[cur]) == 1:
            path.append(cur)
            cur = succ[cur][0]
        paths.append((path, cur))
    (short, merge), (long, merge2) = sorted(paths, key=lambda p: len(p[0]))
    nodes = graph.nodes
    kinds = [type(nodes[n]).__name__ for n in long]
    shape_ok = merge == merge2 and len(pred[merge]) == 2 and len(short) <= 1 and type(nodes[merge]).__name__ in NEURONS
    if not (shape_ok and len(kinds) == 3 and kinds[0] == kinds[2] == "Conv2d" and kinds[1] in NEURONS
            and all(type(nodes[n]).__name__ == "Conv2d" for n in short)):
        raise ValueError(f"node {branch_at!r} branches into {succ[branch_at]}: the only branching stdl-edge imports "
                         "is a residual block, Conv2d-neuron-Conv2d plus an identity or Conv2d shortcut into one "
                         "neuron node")
    first = _neuron_layer([(long[0], nodes[long[0]])], long[1], nodes[long[1]], shape, dt)
    syn2, out = _synapse([(long[2], nodes[long[2]])], tuple(first.out_shape))
    neuron = NEURONS[type(nodes[merge]).__name__](merge, nodes[merge], dt)
    if neuron.params != first.neuron or first.conv.kernel_size != (3, 3) or syn2.weight.shape[2] != 3 \
            or syn2.stride != 1 or first.conv.padding != (1, 1) or syn2.padding != 1:
        raise ValueError(f"residual block {long} -> {merge!r}: stdl-edge's block is conv3x3 (padding 1) - neuron - "
                         "conv3x3 (stride 1) with one neuron model for both neuron nodes")
    block = SpikingResidualBlock(shape, syn2.weight.shape[0], first.conv.stride[0], neuron.params, batchnorm=False)
    w2, b2 = _fold(syn2, neuron, merge, nodes[merge], out)
    _set(block.first.conv, first.conv.weight.detach().numpy(), None if first.conv.bias is None else
         first.conv.bias.detach().numpy())
    if first.conv.bias is None:
        with torch.no_grad():
            block.first.conv.bias.zero_()
    if short:
        sc, _ = _synapse([(short[0], nodes[short[0]])], shape)
        if block.shortcut is None or sc.weight.shape[2] != 1 or sc.stride != block.first.conv.stride[0] or sc.padding:
            raise ValueError(f"{_where(short[0], nodes[short[0]])}: a residual shortcut must be a 1x1 conv with the "
                             "block's stride where the shape changes")
        ws, bs = _fold(sc, ImportedNeuron(neuron.params, neuron.gain, 0 * neuron.offset), merge, nodes[merge], out)
        _set(block.shortcut[0], ws, bs)
    elif block.shortcut is not None or np.any(neuron.gain != 1):
        raise ValueError(f"residual block into {merge!r}: an identity shortcut needs the same shape and a unit "
                         "input gain on its neuron")
    _set(block.second.conv, w2, b2)
    return block, merge


def from_nir(graph: Any, dt_us: int | None = None, input_shape: tuple[int, int, int] | None = None) -> NirImport:
    """The :class:`SpikingNet` of a NIR graph (a chain of layers, residual blocks as branches).

    ``dt_us`` is the simulation step (default: the graph's ``dt_us``/``dt`` metadata);
    ``input_shape`` (C, H, W) is needed when the graph reads a flat vector: a Flatten goes first.
    Unsupported nodes raise one line naming the node and its type.
    """
    meta = dict(graph.metadata or {})
    step_us = _time_step_us(meta, dt_us)
    dt = step_us * 1e-6
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        pred[b].append(a)
    known = set(NEURONS) | set(SYNAPSES) | set(STATELESS) | {"Input", "Output"}
    for name, node in graph.nodes.items():
        if type(node).__name__ not in known:
            raise ValueError(f"{_where(name, node)} is not supported by the stdl-edge NIR import (it reads "
                             f"{', '.join(sorted(known - {'Input', 'Output'}))})")
    ends = {t: [n for n, x in graph.nodes.items() if type(x).__name__ == t] for t in ("Input", "Output")}
    if len(ends["Input"]) != 1 or len(ends["Output"]) != 1:
        raise ValueError(f"the graph has inputs {ends['Input']} and outputs {ends['Output']}; stdl-edge imports "
                         "graphs with one of each")
    cur = ends["Input"][0]
    shape = tuple(int(v) for v in graph.nodes[cur].input_type["input"])
    layers: list[Layer] = []
    if len(shape) == 1 and input_shape is not None:
        if math.prod(input_shape) != shape[0]:
            raise ValueError(f"input_shape={tuple(input_shape)} has {math.prod(input_shape)} values; the graph reads {shape[0]}")
        layers.append(Flatten(tuple(input_shape)))
    chain: list[tuple[str, Any]] = []
    for _ in range(len(graph.nodes) + 1):  # each pass moves on by at least one node; no cycle survives
        if len(succ[cur]) == 2 and not chain:
            block, cur = _residual(cur, graph, succ, pred, shape, dt)
            layers.append(block)
            shape = tuple(block.out_shape)
            continue
        if len(succ[cur]) != 1:
            raise ValueError(f"{_where(cur, graph.nodes[cur])} feeds {succ[cur] or 'nothing'}; stdl-edge imports a chain "
                             "of layers ending in one Output node (with residual blocks as its only branches)")
        cur = succ[cur][0]
        node, kind = graph.nodes[cur], type(graph.nodes[cur]).__name__
        if len(pred[cur]) != 1:
            raise ValueError(f"{_where(cur, node)} sums the inputs {pred[cur]}: outside a residual block stdl-edge "
                             "layers have one input (a recurrent connection is not supported)")
        if layers and isinstance(layers[-1], Readout) and not (kind == "Output" and not chain):
            raise ValueError(f"{_where(cur, node)} follows a non-spiking neuron; stdl-edge's non-spiking layer is the "
                             "readout, the last layer")
        if kind == "Output":
            if chain:  # an affine output: a readout with v[t] = W x[t] + b
                syn, out = _synapse(chain, shape)
                layer = Readout(syn.weight.shape[1], syn.weight.shape[0], bias=bool(np.any(syn.bias != 0)))
                _set(layer.linear, syn.weight, syn.bias if layer.linear.bias is not None else None)
                layers.append(layer)
            break
        if kind in SYNAPSES:
            chain.append((cur, node))
            continue
        if chain and kind in STATELESS:
            raise ValueError(f"{_where(cur, node)} sits between a synapse and its neuron; stdl-edge layers are synapse "
                             "+ neuron")
        if kind not in NEURONS and kind not in STATELESS:  # a second Input
            raise ValueError(f"{_where(cur, node)} inside the graph is not supported")
        layers.append(_neuron_layer(chain, cur, node, shape, dt) if kind in NEURONS else
                      _stateless_layer(cur, node, shape))
        chain = []
        shape = tuple(layers[-1].out_shape)
    else:
        raise ValueError("the graph has a cycle (a recurrent connection); stdl-edge imports feed-forward graphs")
    return NirImport(_network(layers), _stream(meta, step_us))


def _stream(meta: dict[str, Any], step_us: int) -> StreamInfo | None:
    stream = stream_from_metadata(meta)
    if stream is None or stream.dt_us == step_us:
        return stream
    return StreamInfo(stream.sensor_size, step_us, stream.num_steps, stream.bin_mode, stream.class_names)


def _network(layers: list[Layer]) -> SpikingNet:
    if not layers or len(layers[0].in_shape) != 3:
        raise ValueError("the graph reads a flat vector; give input_shape=(C, H, W) (--input-shape) of the event "
                         "frames it flattens, so events can be binned for it")
    if len(layers[-1].out_shape) != 1:
        raise ValueError(f"the graph's output {layers[-1].out_shape} is not a vector of class scores")
    spiking = [layer.neuron for layer in layers if getattr(layer, "neuron", None) is not None and layer.spiking]
    config = ModelConfig(arch="custom", input_shape=tuple(layers[0].in_shape), num_classes=layers[-1].out_shape[0],
                         neuron=spiking[0] if spiking else CubaParams(), layers=tuple(layer_spec(x) for x in layers))
    return SpikingNet(layers, config).eval()


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
