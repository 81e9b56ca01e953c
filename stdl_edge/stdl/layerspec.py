"""JSON description of a layer, so auxiliary heads can be saved and rebuilt without pickle.

``layer_spec(layer)`` gives ``{"kind": ..., **constructor arguments}``; ``build_layer(spec)``
builds a fresh layer of the same class. ``copy_layer(layer, in_shape)`` makes a freshly
initialised copy of ``layer`` that reads ``in_shape`` (used by the auxiliary builder: a
conv keeps its channels, kernel, stride and padding, a dense layer its width).
"""

from __future__ import annotations

from typing import Any

from ..layers import (AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense,
                      SpikingResidualBlock)
from ..neuron import CubaParams


def layer_spec(layer: Layer) -> dict[str, Any]:
    """Constructor arguments of ``layer`` as JSON-able data (``kind`` tags the class)."""
    if isinstance(layer, Readout):
        return {"kind": "readout", "in_features": layer.in_shape[0], "num_classes": layer.out_shape[0],
                "bias": layer.linear.bias is not None}
    if isinstance(layer, SpikingConv2d):
        conv = layer.conv
        return {"kind": "conv", "in_shape": list(layer.in_shape), "out_channels": conv.out_channels,
                "kernel_size": conv.kernel_size[0], "stride": conv.stride[0], "padding": conv.padding[0],
                "bias": conv.bias is not None, "batchnorm": layer.bn is not None,
                "neuron": layer.neuron.to_dict()}
    if isinstance(layer, SpikingDense):
        return {"kind": "dense", "in_features": layer.in_shape[0], "out_features": layer.out_shape[0],
                "bias": layer.linear.bias is not None, "batchnorm": layer.bn is not None,
                "neuron": layer.neuron.to_dict()}
    if isinstance(layer, SpikingResidualBlock):
        return {"kind": "resblock", "in_shape": list(layer.in_shape), "out_channels": layer.out_shape[0],
                "stride": layer.first.conv.stride[0], "neuron": layer.neuron.to_dict()}
    if isinstance(layer, AvgPool2d):
        return {"kind": "avgpool", "in_shape": list(layer.in_shape), "kernel_size": layer.kernel_size}
    if isinstance(layer, Flatten):
        return {"kind": "flatten", "in_shape": list(layer.in_shape)}
    raise ValueError(f"layer kind {layer.kind!r} ({type(layer).__name__}) has no spec; "
                     "add it to stdl_edge.stdl.layerspec")


def build_layer(spec: dict[str, Any]) -> Layer:
    """Fresh layer from :func:`layer_spec` output."""
    s = dict(spec)
    kind = s.pop("kind", None)
    if "neuron" in s:
        s["neuron"] = CubaParams.from_dict(s["neuron"])
    if "in_shape" in s:
        s["in_shape"] = tuple(s["in_shape"])
    classes = {"readout": Readout, "conv": SpikingConv2d, "dense": SpikingDense,
               "resblock": SpikingResidualBlock, "avgpool": AvgPool2d, "flatten": Flatten}
    if kind not in classes:
        raise ValueError(f"unknown layer kind {kind!r} in a layer spec; known: {', '.join(classes)}")
    return classes[kind](**s)


def copy_layer(layer: Layer, in_shape: tuple[int, ...]) -> Layer:
    """Freshly initialised layer of ``layer``'s class and hyper-parameters, reading ``in_shape``."""
    spec = layer_spec(layer)
    if spec["kind"] in ("conv", "resblock", "avgpool", "flatten"):
        spec["in_shape"] = list(in_shape)
    else:
        spec["in_features"] = int(in_shape[0])
    return build_layer(spec)
