"""Models as lists of layer specs: what a user writes in TOML/JSON or Python, and the zoo too.

A spec says what a layer is, not what it reads: the shapes follow from the data set's input
shape, one layer after the other, and the readout's width from its class count::

    layers = [Conv(16, stride=2), Conv(32, stride=2), Flatten(), Dropout(0.2), Dense(128), Readout()]

or in a TOML file (``stdl-edge train --model net.toml``, or a ``[model]`` table of ``--config``)::

    [[layers]]
    kind = "conv"
    channels = 16
    stride = 2

    [[layers]]
    kind = "flatten"

    [[layers]]
    kind = "readout"

Kinds and their parameters (:data:`SPECS`): ``conv`` (channels, kernel 3, stride 1, padding
kernel // 2, bias, batchnorm), ``dense`` (features, bias, batchnorm), ``dense_rec`` (the same,
plus synapses from the layer's own spikes of the previous step), ``pool`` (kernel 2, or 0
for global pooling of a square map; mode 'avg' or 'sum'), ``flatten``, ``dropout`` (p: the
probability a spike of the next conv/dense/readout layer's input is dropped in training; a
flatten may come between; identity in evaluation and every export), ``resblock`` (channels,
stride, batchnorm); conv, dense, dense_rec and resblock take a ``neuron`` table too, for their own
CUBA parameters (:class:`~stdl_edge.neuron.CubaParams` fields), ``readout`` (bias, classes: the data set's when left out). ``batchnorm``
left out takes the model's setting; every spiking layer gets the model's neuron.

:func:`build_layers` makes the layers; a spec that does not fit the shape before it raises one
``ValueError`` naming the spec (``layers[2] (conv)``) and the shapes. :func:`parse_specs`
reads the dict form (``{"kind": "conv", "channels": 16}``) with one line for an unknown kind
or field; :func:`spec_dict` writes it.

>>> [layer.kind for layer in build_layers([Conv(4, stride=2), Flatten(), Readout()], (2, 8, 8), 3)]
['conv', 'flatten', 'readout']
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence, Union

from .checks import boolean, fields_of, number, table, text, whole
from .layers import (AvgPool2d, Flatten as FlattenLayer, Layer, Readout as ReadoutLayer, Shape, SpikingConv2d,
                     SpikingDense, SpikingRecurrentDense, SpikingResidualBlock, SumPool2d, conv_out)
from .neuron import CubaParams


@dataclass(frozen=True)
class Conv:
    """Conv2d (+ BatchNorm) -> CUBA LIF; ``padding`` None is ``kernel // 2`` (same size at stride 1)."""

    channels: int
    kernel: int = 3
    stride: int = 1
    padding: int | None = None
    bias: bool = False
    batchnorm: bool | None = None
    neuron: CubaParams | None = None
    kind: ClassVar[str] = "conv"


@dataclass(frozen=True)
class Dense:
    """Linear (+ BatchNorm1d) -> CUBA LIF over a flat input."""

    features: int
    bias: bool = False
    batchnorm: bool | None = None
    neuron: CubaParams | None = None
    kind: ClassVar[str] = "dense"


@dataclass(frozen=True)
class DenseRec:
    """Recurrent dense: :class:`Dense` plus synapses from the layer's own spikes of the step
    before (:class:`~stdl_edge.layers.SpikingRecurrentDense`; netx's ``dense_rec``)."""

    features: int
    bias: bool = False
    batchnorm: bool | None = None
    neuron: CubaParams | None = None
    kind: ClassVar[str] = "dense_rec"


@dataclass(frozen=True)
class Pool:
    """``kernel x kernel`` pooling with stride ``kernel`` ('avg' or 'sum'); ``kernel=0`` pools the
    whole (square) map to 1 x 1 (global pooling)."""

    kernel: int = 2
    mode: str = "avg"
    kind: ClassVar[str] = "pool"


@dataclass(frozen=True)
class Flatten:
    """``(C, H, W) -> (C * H * W,)``."""

    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Dropout:
    """Drop each input spike of the next synaptic layer with probability ``p`` in training."""

    p: float
    kind: ClassVar[str] = "dropout"


@dataclass(frozen=True)
class ResBlock:
    """Spiking basic block (two 3x3 convs and a shortcut); not expressible in netx."""

    channels: int
    stride: int = 1
    batchnorm: bool | None = None
    neuron: CubaParams | None = None
    kind: ClassVar[str] = "resblock"


@dataclass(frozen=True)
class Readout:
    """The non-spiking readout; ``classes`` None is the data set's class count."""

    bias: bool = True
    classes: int | None = None
    kind: ClassVar[str] = "readout"


LayerSpec = Union[Conv, Dense, DenseRec, Pool, Flatten, Dropout, ResBlock, Readout]
#: kind -> spec class
SPECS: dict[str, type] = {c.kind: c for c in (Conv, Dense, DenseRec, Pool, Flatten, Dropout, ResBlock, Readout)}
POOL_MODES = ("avg", "sum")


def spec_dict(spec: LayerSpec) -> dict[str, Any]:
    """The dict form ``{"kind": ..., **fields}`` (what TOML/JSON hold; fields left at None are left out)."""
    d: dict[str, Any] = {"kind": spec.kind}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value is not None:
            d[f.name] = value.to_dict() if isinstance(value, CubaParams) else value
    return d


def parse_spec(value: Any, where: str) -> LayerSpec:
    """One spec from its dict form (or a spec object, returned as it is); errors name ``where``."""
    if isinstance(value, tuple(SPECS.values())):
        return value
    d = dict(table(value, where))
    kind = d.pop("kind", None)
    if kind not in SPECS:
        raise ValueError(f"{where}: kind {kind!r} is unknown; use one of {', '.join(SPECS)}")
    cls = SPECS[kind]
    d = fields_of(cls, d, f"{where} ({kind})", required=[f.name for f in dataclasses.fields(cls)
                                                         if f.default is dataclasses.MISSING])
    for name, v in d.items():
        what = f"{where}.{name}"
        if v is None:
            continue
        if name == "neuron":
            d[name] = v if isinstance(v, CubaParams) else CubaParams.from_dict(v, what)
        elif name in ("bias", "batchnorm"):
            d[name] = boolean(v, what)
        elif name == "p":
            d[name] = number(v, what, minimum=0, maximum=0.99)
        elif name == "mode":
            d[name] = text(v, what, choices=POOL_MODES)
        else:
            d[name] = whole(v, what, minimum=0 if name == "padding" or (kind, name) == ("pool", "kernel") else 1)
    return cls(**d)


def parse_specs(values: Sequence[Any], where: str = "layers") -> list[LayerSpec]:
    """A list of specs from their dict forms (``where[i]`` named in errors); at least one, ending
    with a readout."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{where} must be a list of layers ({{kind = ..., ...}}), not {type(values).__name__}")
    specs = [parse_spec(v, f"{where}[{i}]") for i, v in enumerate(values)]
    if not specs or not isinstance(specs[-1], Readout):
        raise ValueError(f"{where}: the last layer must be a readout (kind = \"readout\"); got "
                         f"{specs[-1].kind if specs else 'no layers'}")
    return specs


def read_model_file(path: str | Path) -> list[dict[str, Any]]:
    """The layer list of a model file: TOML (``[[layers]]`` tables, or ``[[model.layers]]``) or JSON
    (``{"layers": [...]}`` or a bare list), checked (:func:`parse_specs`) and in dict form."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"model file {path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} "
                         f"({str(e).splitlines()[0]})") from None
    if isinstance(data, dict):
        data = data.get("model", data)
        if not isinstance(data, dict) or "layers" not in data:
            raise ValueError(f"model file {path} has no 'layers' list")
        data = data["layers"]
    return [spec_dict(s) for s in parse_specs(data, f"{path}: layers")]


def out_shape(spec: LayerSpec, in_shape: Shape, num_classes: int = 0) -> Shape:
    """The per-sample output shape of ``spec`` on ``in_shape`` (no layer is built, no check made:
    the zoo plans with it; :func:`build_layers` checks)."""
    if isinstance(spec, Conv):
        pad = spec.kernel // 2 if spec.padding is None else spec.padding
        return (spec.channels, *(conv_out(s, spec.kernel, spec.stride, pad) for s in in_shape[1:]))
    if isinstance(spec, ResBlock):
        return (spec.channels, *(conv_out(s, 3, spec.stride, 1) for s in in_shape[1:]))
    if isinstance(spec, Pool):
        k = spec.kernel or in_shape[1]
        return (in_shape[0], in_shape[1] // k, in_shape[2] // k)
    if isinstance(spec, Flatten):
        return (int(math.prod(in_shape)),)
    if isinstance(spec, (Dense, DenseRec)):
        return (spec.features,)
    if isinstance(spec, Readout):
        return (spec.classes or num_classes,)
    return tuple(in_shape)


def _fail(where: str, spec: LayerSpec, in_shape: Shape, why: str) -> ValueError:
    return ValueError(f"model {where} ({spec.kind}) does not fit its input {tuple(in_shape)}: {why}")


def build_layers(specs: Sequence[LayerSpec], input_shape: Shape, num_classes: int,
                 neuron: CubaParams = CubaParams(), batchnorm: bool = False,
                 where: str = "layers") -> list[Layer]:
    """The layers of ``specs`` for inputs of ``input_shape`` ``(C, H, W)`` and ``num_classes``
    classes, in order (a dropout becomes the input dropout of the next synaptic layer).

    ``neuron`` goes to every spiking layer, ``batchnorm`` to every spec that leaves it out.
    Raises one ``ValueError`` naming ``where[i]`` and the shapes where a spec does not fit.
    """
    layers: list[Layer] = []
    shape: Shape = tuple(int(v) for v in input_shape)
    dropout, dropout_at = 0.0, -1
    for i, spec in enumerate(specs):
        at = f"{where}[{i}]"
        bn = batchnorm if getattr(spec, "batchnorm", None) is None else spec.batchnorm
        n = getattr(spec, "neuron", None) or neuron
        if isinstance(spec, Dropout):
            dropout, dropout_at = spec.p, i
            continue
        if dropout and not isinstance(spec, (Conv, Dense, DenseRec, Readout, Flatten)):
            raise ValueError(f"model {where}[{dropout_at}] (dropout) is followed by a {spec.kind}; a dropout acts "
                             "on the input of the next conv, dense or readout layer (a flatten may come between)")
        if isinstance(spec, (Conv, ResBlock, Pool)) and len(shape) != 3:
            raise _fail(at, spec, shape, "it reads (channels, height, width) maps; this input is flat")
        if isinstance(spec, (Dense, DenseRec, Readout)) and len(shape) != 1:
            raise _fail(at, spec, shape, "it reads a flat vector; put a flatten (or a global pool and a "
                                         "flatten) before it")
        if isinstance(spec, Conv):
            pad = spec.kernel // 2 if spec.padding is None else spec.padding
            out = list(out_shape(spec, shape)[1:])
            if min(out) < 1:
                raise _fail(at, spec, shape, f"kernel {spec.kernel}, stride {spec.stride} and padding {pad} "
                                             f"give a {out[0]}x{out[1]} map; use a smaller kernel or stride, or a "
                                             "larger input")
            layers.append(SpikingConv2d(shape, spec.channels, spec.kernel, spec.stride, pad, bias=spec.bias,
                                        batchnorm=bn, neuron=n, dropout=dropout))
        elif isinstance(spec, Dense):
            layers.append(SpikingDense(shape[0], spec.features, bias=spec.bias, batchnorm=bn, neuron=n,
                                       dropout=dropout))
        elif isinstance(spec, DenseRec):
            layers.append(SpikingRecurrentDense(shape[0], spec.features, bias=spec.bias, batchnorm=bn, neuron=n,
                                                dropout=dropout))
        elif isinstance(spec, Readout):
            if spec.classes is not None and spec.classes != num_classes:
                raise ValueError(f"model {at} (readout) gives {spec.classes} classes; the data set has "
                                 f"{num_classes}: leave classes out or set it to {num_classes}")
            layers.append(ReadoutLayer(shape[0], num_classes, bias=spec.bias, dropout=dropout))
        elif isinstance(spec, Pool):
            k = spec.kernel or shape[1]
            if spec.kernel == 0 and shape[1] != shape[2]:
                raise _fail(at, spec, shape, "global pooling (kernel 0) needs a square map")
            if shape[1] % k or shape[2] % k:
                raise _fail(at, spec, shape, f"kernel {k} does not divide the {shape[1]}x{shape[2]} map; "
                                             "pick one that divides both sides")
            layers.append((AvgPool2d if spec.mode == "avg" else SumPool2d)(shape, k))
        elif isinstance(spec, Flatten):
            if len(shape) == 1:
                raise _fail(at, spec, shape, "it is flat already; remove this flatten")
            layers.append(FlattenLayer(shape))
        elif isinstance(spec, ResBlock):
            if min(shape[1:]) < spec.stride:
                raise _fail(at, spec, shape, f"stride {spec.stride} is larger than the map")
            layers.append(SpikingResidualBlock(shape, spec.channels, spec.stride, neuron=n, batchnorm=bn))
        else:
            raise ValueError(f"model {at}: {spec!r} is not a layer spec; use one of {', '.join(SPECS)}")
        if not isinstance(spec, Flatten):
            dropout = 0.0
        shape = tuple(layers[-1].out_shape)
    if dropout:
        raise ValueError(f"model {where}[{dropout_at}] (dropout) has no layer after it to act on")
    if not layers or not isinstance(layers[-1], ReadoutLayer):
        raise ValueError(f"model {where}: the last layer must be a readout")
    return layers
