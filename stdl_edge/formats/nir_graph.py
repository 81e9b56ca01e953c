"""The NIR reader's graph walk: a NIR graph's nodes and edges as stdl-edge layers.

:mod:`stdl_edge.formats.nir` holds the format (constants, the neuron mapping both ways, the
writer, the file reader); this module walks a graph read from a file and builds the layers:
a chain ``Input -> [Scale] synapse [Scale] -> neuron -> ... -> Output`` where each synapse
(``Conv2d``, ``Affine``, ``Linear``) and its ``Scale`` nodes fold into one conv or dense
synapse, the neuron's gain and offset (:class:`ImportedNeuron`) fold into its weights and
bias, ``Flatten``/``AvgPool2d``/``SumPool2d`` become themselves, and two branches from one
node that meet in one neuron node become a residual block. The neuron importers come in as a
registry ``node type -> importer`` (``neurons``), so the time-constant mapping stays in the
format module. Unsupported nodes and shapes raise one line naming the node and its type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..layers import AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense, SpikingResidualBlock, SumPool2d
from ..layerspec import layer_spec
from ..models import ModelConfig, SpikingNet
from ..neuron import CubaParams

SYNAPSES = ("Conv2d", "Affine", "Linear", "Scale")
STATELESS = ("Flatten", "AvgPool2d", "SumPool2d")


@dataclass(frozen=True)
class ImportedNeuron:
    """A NIR neuron node as a CUBA neuron: ``I_ours = gain * (synaptic input) + offset`` per neuron.

    params: the layer's CUBA parameters (one per layer); spiking is ``params.spiking``.
    gain, offset: arrays of the node's shape.
    """

    params: CubaParams
    gain: np.ndarray
    offset: np.ndarray


def where(name: str, node: Any) -> str:
    """How an error names a node: ``node 'name' (Type)``."""
    return f"node {name!r} ({type(node).__name__})"


#: a neuron importer: ``(node name, node, dt in s) -> ImportedNeuron``
NeuronImporter = Callable[[str, Any, float], ImportedNeuron]
Neurons = Mapping[str, NeuronImporter]


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
    at = where(name, node)
    if type(node).__name__ == "Conv2d":
        w = np.asarray(node.weight, np.float64)
        pad, stride = node.padding, np.atleast_1d(node.stride)
        if isinstance(pad, str):
            pad = 0 if pad == "valid" else (w.shape[2] // 2 if w.shape[2] % 2 and np.all(stride == 1) else None)
        pad = np.atleast_1d(pad) if pad is not None else None
        if (pad is None or node.groups != 1 or np.any(np.atleast_1d(node.dilation) != 1) or w.shape[2] != w.shape[3]
                or len(set(stride.tolist())) != 1 or len(set(pad.tolist())) != 1):
            raise ValueError(f"{at}: only square, ungrouped, undilated convolutions with one stride and padding "
                             "import")
        if len(shape) != 3 or shape[0] != w.shape[1]:
            raise ValueError(f"{at}: reads {w.shape[1]} channels, gets {shape}")
        syn = _Synapse("conv", w, np.asarray(node.bias, np.float64), int(stride[0]), int(pad[0]))
        out = (w.shape[0], *[(s + 2 * syn.padding - w.shape[2]) // syn.stride + 1 for s in shape[1:]])
    else:
        w = np.asarray(node.weight, np.float64)
        if w.ndim != 2 or shape != (w.shape[1],):
            raise ValueError(f"{at}: weight {w.shape} does not read the input {shape} (a map needs a Flatten first)")
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
        raise ValueError(f"{where(name, node)}: its per-neuron values differ inside a channel; a conv layer can "
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


def _neuron_layer(chain: list[tuple[str, Any]], name: str, node: Any, shape: tuple[int, ...], dt: float,
                  neurons: Neurons) -> Layer:
    syn, out = _synapse(chain, shape)
    neuron = neurons[type(node).__name__](name, node, dt)
    w, b = _fold(syn, neuron, name, node, out)
    bias = bool(np.any(b != 0))
    if syn.kind == "conv":
        if not neuron.params.spiking:
            raise ValueError(f"{where(name, node)}: a non-spiking conv layer; stdl-edge's non-spiking layer is "
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
            raise ValueError(f"{where(name, node)}: start_dim={node.start_dim}, end_dim={node.end_dim}; only a "
                             "flatten of the whole (C, H, W) map (start_dim=0, end_dim=-1) imports")
        return Flatten(shape)
    k, s, p = (np.atleast_1d(np.asarray(getattr(node, f))) for f in ("kernel_size", "stride", "padding"))
    if len(set(k.tolist())) != 1 or not np.array_equal(np.broadcast_to(s, k.shape), k) or np.any(p != 0):
        raise ValueError(f"{where(name, node)}: only square pooling with stride = kernel and no padding imports")
    return (AvgPool2d if kind == "AvgPool2d" else SumPool2d)(shape, int(k[0]))


def _residual(branch_at: str, graph: Any, succ: dict[str, list[str]], pred: dict[str, list[str]],
              shape: tuple[int, ...], dt: float, neurons: Neurons) -> tuple[SpikingResidualBlock, str]:
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
    shape_ok = merge == merge2 and len(pred[merge]) == 2 and len(short) <= 1 and type(nodes[merge]).__name__ in neurons
    if not (shape_ok and len(kinds) == 3 and kinds[0] == kinds[2] == "Conv2d" and kinds[1] in neurons
            and all(type(nodes[n]).__name__ == "Conv2d" for n in short)):
        raise ValueError(f"node {branch_at!r} branches into {succ[branch_at]}: the only branching stdl-edge imports "
                         "is a residual block, Conv2d-neuron-Conv2d plus an identity or Conv2d shortcut into one "
                         "neuron node")
    first = _neuron_layer([(long[0], nodes[long[0]])], long[1], nodes[long[1]], shape, dt, neurons)
    syn2, out = _synapse([(long[2], nodes[long[2]])], tuple(first.out_shape))
    neuron = neurons[type(nodes[merge]).__name__](merge, nodes[merge], dt)
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
            raise ValueError(f"{where(short[0], nodes[short[0]])}: a residual shortcut must be a 1x1 conv with the "
                             "block's stride where the shape changes")
        ws, bs = _fold(sc, ImportedNeuron(neuron.params, neuron.gain, 0 * neuron.offset), merge, nodes[merge], out)
        _set(block.shortcut[0], ws, bs)
    elif block.shortcut is not None or np.any(neuron.gain != 1):
        raise ValueError(f"residual block into {merge!r}: an identity shortcut needs the same shape and a unit "
                         "input gain on its neuron")
    _set(block.second.conv, w2, b2)
    return block, merge



def graph_layers(graph: Any, dt: float, input_shape: tuple[int, int, int] | None, neurons: Neurons) -> list[Layer]:
    """The layers of ``graph`` at the step ``dt`` (seconds), in order; ``neurons`` imports each neuron node.

    ``input_shape`` (C, H, W): a graph that reads a flat vector gets a Flatten of it first.
    """
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        pred[b].append(a)
    known = set(neurons) | set(SYNAPSES) | set(STATELESS) | {"Input", "Output"}
    for name, node in graph.nodes.items():
        if type(node).__name__ not in known:
            raise ValueError(f"{where(name, node)} is not supported by the stdl-edge NIR import (it reads "
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
            block, cur = _residual(cur, graph, succ, pred, shape, dt, neurons)
            layers.append(block)
            shape = tuple(block.out_shape)
            continue
        if len(succ[cur]) != 1:
            raise ValueError(f"{where(cur, graph.nodes[cur])} feeds {succ[cur] or 'nothing'}; stdl-edge imports a chain "
                             "of layers ending in one Output node (with residual blocks as its only branches)")
        cur = succ[cur][0]
        node, kind = graph.nodes[cur], type(graph.nodes[cur]).__name__
        if len(pred[cur]) != 1:
            raise ValueError(f"{where(cur, node)} sums the inputs {pred[cur]}: outside a residual block stdl-edge "
                             "layers have one input (a recurrent connection is not supported)")
        if layers and isinstance(layers[-1], Readout) and not (kind == "Output" and not chain):
            raise ValueError(f"{where(cur, node)} follows a non-spiking neuron; stdl-edge's non-spiking layer is the "
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
            raise ValueError(f"{where(cur, node)} sits between a synapse and its neuron; stdl-edge layers are synapse "
                             "+ neuron")
        if kind not in neurons and kind not in STATELESS:  # a second Input
            raise ValueError(f"{where(cur, node)} inside the graph is not supported")
        layers.append(_neuron_layer(chain, cur, node, shape, dt, neurons) if kind in neurons else
                      _stateless_layer(cur, node, shape))
        chain = []
        shape = tuple(layers[-1].out_shape)
    else:
        raise ValueError("the graph has a cycle (a recurrent connection); stdl-edge imports feed-forward graphs")
    return layers


def network(layers: list[Layer]) -> SpikingNet:
    """The :class:`SpikingNet` (config ``arch="custom"``) of imported ``layers``, in eval mode."""
    if not layers or len(layers[0].in_shape) != 3:
        raise ValueError("the graph reads a flat vector; give input_shape=(C, H, W) (--input-shape) of the event "
                         "frames it flattens, so events can be binned for it")
    if len(layers[-1].out_shape) != 1:
        raise ValueError(f"the graph's output {layers[-1].out_shape} is not a vector of class scores")
    spiking = [layer.neuron for layer in layers if getattr(layer, "neuron", None) is not None and layer.spiking]
    config = ModelConfig(arch="custom", input_shape=tuple(layers[0].in_shape), num_classes=layers[-1].out_shape[0],
                         neuron=spiking[0] if spiking else CubaParams(), layers=tuple(layer_spec(x) for x in layers))
    return SpikingNet(layers, config).eval()

