"""JSON description of layers and networks, so they can be saved and rebuilt without pickle.

``layer_spec(layer)`` gives ``{"kind": ..., **constructor arguments}``; ``build_layer(spec)``
builds a fresh layer of the same class. ``copy_layer(layer, in_shape)`` makes a freshly
initialised copy of ``layer`` that reads ``in_shape`` (used by the auxiliary builder: a
conv keeps its channels, kernel, stride and padding, a dense layer its width).
``net_spec(net)`` / ``net_from_spec(spec, like)`` do the same for a network made of such
layers (an STDL auxiliary head, saved in the run folder's ``model.json``).
"""

from __future__ import annotations

from typing import Any

from .layers import (AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense,
                     SpikingResidualBlock, SumPool2d)
from .models import SpikingNet
from .neuron import READOUT_PARAMS, CubaParams


def layer_spec(layer: Layer) -> dict[str, Any]:
    """Constructor arguments of ``layer`` as JSON-able data (``kind`` tags the class)."""
    if isinstance(layer, Readout):
        spec = {"kind": "readout", "in_features": layer.in_shape[0], "num_classes": layer.out_shape[0],
                "bias": layer.linear.bias is not None}
        if layer.neuron != READOUT_PARAMS:  # an imported leaky or perfect integrator
            spec["neuron"] = layer.neuron.to_dict()
        return _with_dropout(spec, layer)
    if isinstance(layer, SpikingConv2d):
        conv = layer.conv
        return _with_dropout({"kind": "conv", "in_shape": list(layer.in_shape), "out_channels": conv.out_channels,
                              "kernel_size": conv.kernel_size[0], "stride": conv.stride[0],
                              "padding": conv.padding[0], "bias": conv.bias is not None,
                              "batchnorm": layer.bn is not None, "neuron": layer.neuron.to_dict()}, layer)
    if isinstance(layer, (SpikingDense, SpikingRecurrentDense)):
        return _with_dropout({"kind": layer.kind, "in_features": layer.in_shape[0], "out_features": layer.out_shape[0],
                              "bias": layer.linear.bias is not None, "batchnorm": layer.bn is not None,
                              "neuron": layer.neuron.to_dict()}, layer)
    if isinstance(layer, SpikingResidualBlock):
        spec = {"kind": "resblock", "in_shape": list(layer.in_shape), "out_channels": layer.out_shape[0],
                "stride": layer.first.conv.stride[0], "neuron": layer.neuron.to_dict()}
        if layer.first.bn is None:  # the folded form (an imported NIR block)
            spec["batchnorm"] = False
        return spec
    if isinstance(layer, (AvgPool2d, SumPool2d)):
        return {"kind": layer.kind, "in_shape": list(layer.in_shape), "kernel_size": layer.kernel_size}
    if isinstance(layer, Flatten):
        return {"kind": "flatten", "in_shape": list(layer.in_shape)}
    raise ValueError(f"layer kind {layer.kind!r} ({type(layer).__name__}) has no spec; "
                     "add it to stdl_edge.layerspec")


def _with_dropout(spec: dict[str, Any], layer: SpikingDense | SpikingRecurrentDense | SpikingConv2d) -> dict[str, Any]:
    """``spec`` with the layer's input ``dropout`` where it has one (the record is as before without)."""
    if layer.dropout:
        spec["dropout"] = layer.dropout
    return spec


def build_layer(spec: dict[str, Any]) -> Layer:
    """Fresh layer from :func:`layer_spec` output."""
    s = dict(spec)
    kind = s.pop("kind", None)
    if "neuron" in s:
        s["neuron"] = CubaParams.from_dict(s["neuron"])
    if "in_shape" in s:
        s["in_shape"] = tuple(s["in_shape"])
    classes = {"readout": Readout, "conv": SpikingConv2d, "dense": SpikingDense, "dense_rec": SpikingRecurrentDense,
               "resblock": SpikingResidualBlock, "avgpool": AvgPool2d, "sumpool": SumPool2d, "flatten": Flatten}
    if kind not in classes:
        raise ValueError(f"unknown layer kind {kind!r} in a layer spec; known: {', '.join(classes)}")
    return classes[kind](**s)


def copy_layer(layer: Layer, in_shape: tuple[int, ...]) -> Layer:
    """Freshly initialised layer of ``layer``'s class and hyper-parameters, reading ``in_shape``."""
    spec = layer_spec(layer)
    if spec["kind"] in ("conv", "resblock", "avgpool", "sumpool", "flatten"):
        spec["in_shape"] = list(in_shape)
    else:
        spec["in_features"] = int(in_shape[0])
    return build_layer(spec)


def net_from_layers(layers: list[Layer], like: SpikingNet) -> SpikingNet:
    """Wrap ``layers`` in a SpikingNet; its config is ``like``'s, with its own input shape
    where that is an image (a flat input keeps ``like``'s: the layers carry the shapes)."""
    in_shape = tuple(layers[0].in_shape)
    config = like.config.replace(input_shape=in_shape) if len(in_shape) == 3 else like.config
    return SpikingNet(layers, config)


def net_spec(net: SpikingNet) -> dict[str, Any]:
    """JSON description of a network of spec-able layers (rebuilt by :func:`net_from_spec`)."""
    return {"input_shape": list(net.input_shape), "layers": [layer_spec(layer) for layer in net.layers]}


def net_from_spec(spec: dict[str, Any], like: SpikingNet) -> SpikingNet:
    """Freshly initialised network from :func:`net_spec` output (config as :func:`net_from_layers`)."""
    return net_from_layers([build_layer(s) for s in spec["layers"]], like)
