"""Hardware-target presets: the constraints a network must meet before it is exported for a chip.

A :class:`Target` says which neuron model a chip runs, whether synapses may have a bias,
which pooling it has, and how large a layer may be. :func:`check_target` lists every
constraint a network breaks, each naming the layer, so a user learns it before export
(``stdl-edge check-target RUN --target if-chip``, or ``export(..., target=...)``, which
refuses such a network); :func:`require_target` raises with that list.

The preset ``if-chip`` describes integrate-and-fire chips of the Speck class: IF neurons
(no leak, no synaptic current decay: :data:`~stdl_edge.neuron.IF_PARAMS`), no bias (so no
BatchNorm either: it folds into one), sum pooling only, no residual blocks, no recurrent layers. The model zoo's
``if-cnn`` is its training preset and passes it. The size limits are this preset's defaults,
not one chip's datasheet: build a ``Target`` with your chip's numbers where they differ.

>>> from stdl_edge.models import ModelConfig, build_model
>>> check_target(build_model(ModelConfig(arch="if-cnn", width=0.25), seed=0), "if-chip")
[]
>>> check_target(build_model(ModelConfig(arch="dvs-cnn", width=0.25), seed=0), "if-chip")[0]
'layer 0.conv: neuron has voltage_decay=0.5 (a leak); if-chip runs integrate-and-fire neurons (voltage_decay=0, current_decay=1)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .layers import (AvgPool2d, Layer, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense,
                     SpikingResidualBlock, SumPool2d)
from .models import SpikingNet


@dataclass(frozen=True)
class Target:
    """What a chip can run.

    name, summary: how the preset is called and described.
    integrate_and_fire: spiking layers must be IF (``current_decay = 1``, ``voltage_decay = 0``).
    bias: synapses may have a bias (BatchNorm counts as one: it folds into a bias).
    pooling: the pooling layer kinds the chip has (``'sumpool'``, ``'avgpool'``).
    residual: residual blocks (a second input summed into a layer) are allowed.
    recurrent: recurrent layers (a layer's own spikes fed back into it: ``dense_rec``) are allowed.
    max_channels: output channels of a conv layer, or neurons of a dense layer, at most.
    max_fan_in: synaptic inputs per neuron at most (``C_in * k * k`` of a conv, ``N_in`` of a dense).
    max_map: largest height or width of a conv layer's input map, in pixels.
    """

    name: str
    summary: str
    integrate_and_fire: bool = True
    bias: bool = False
    pooling: tuple[str, ...] = ("sumpool",)
    residual: bool = False
    recurrent: bool = False
    max_channels: int = 1024
    max_fan_in: int = 8192
    max_map: int = 128


TARGETS: dict[str, Target] = {
    "if-chip": Target("if-chip", "integrate-and-fire chips (Speck class): IF neurons, no bias, sum pooling"),
}


def get_target(target: str | Target) -> Target:
    """The preset named ``target`` (or ``target`` itself)."""
    if isinstance(target, Target):
        return target
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; presets: {', '.join(TARGETS)}")
    return TARGETS[target]


def _synapse_checks(name: str, layer: SpikingConv2d | SpikingDense, t: Target) -> list[str]:
    out = []
    syn = layer.synapse
    if not t.bias and (layer.bn is not None or syn.bias is not None):
        what = "BatchNorm (it folds into a bias)" if layer.bn is not None else "a bias"
        out.append(f"layer {name}: has {what}; {t.name} synapses have no bias (train with bias=False, batchnorm=False)")
    channels = int(syn.weight.shape[0])
    fan_in = math.prod(syn.weight.shape[1:])
    if channels > t.max_channels:
        out.append(f"layer {name}: {channels} output channels/neurons > {t.name}'s {t.max_channels}")
    if fan_in > t.max_fan_in:
        out.append(f"layer {name}: fan-in {fan_in} > {t.name}'s {t.max_fan_in} inputs per neuron")
    if isinstance(layer, SpikingConv2d) and max(layer.in_shape[1:]) > t.max_map:
        out.append(f"layer {name}: input map {layer.in_shape[1]}x{layer.in_shape[2]} > {t.name}'s "
                   f"{t.max_map}x{t.max_map}")
    return out


def _layer_checks(name: str, layer: Layer, t: Target) -> list[str]:
    if isinstance(layer, SpikingResidualBlock):
        if not t.residual:
            return [f"layer {name}: a residual block; {t.name} has no residual connections"]
        return _layer_checks(f"{name}.first", layer.first, t) + _layer_checks(f"{name}.second", layer.second, t)
    if isinstance(layer, SpikingRecurrentDense) and not t.recurrent:
        return [f"layer {name}: a recurrent dense layer; {t.name} has no recurrent connections"]
    if isinstance(layer, (AvgPool2d, SumPool2d)) and layer.kind not in t.pooling:
        return [f"layer {name}: {layer.kind}; {t.name} pools with {' or '.join(t.pooling) or 'nothing'}"]
    if not isinstance(layer, (SpikingConv2d, SpikingDense)):
        return []
    out = _synapse_checks(name, layer, t)
    n = layer.neuron
    if t.integrate_and_fire and not isinstance(layer, Readout) and (n.voltage_decay != 0 or n.current_decay != 1):
        leak = f"voltage_decay={n.voltage_decay} (a leak)" if n.voltage_decay != 0 else \
            f"current_decay={n.current_decay} (a synaptic current)"
        out.append(f"layer {name}: neuron has {leak}; {t.name} runs integrate-and-fire neurons "
                   "(voltage_decay=0, current_decay=1)")
    return out


def check_target(model: SpikingNet, target: str | Target) -> list[str]:
    """Every constraint of ``target`` that ``model`` breaks, one line each naming the layer."""
    t = get_target(target)
    return [v for name, layer in zip(model.layer_names(), model.layers) for v in _layer_checks(name, layer, t)]


class TargetError(ValueError):
    """A network breaks a target's constraints; the message lists each, naming the layer."""


def require_target(model: SpikingNet, target: str | Target) -> None:
    """Raise :class:`TargetError` listing what ``model`` breaks, or return if it meets ``target``."""
    violations = check_target(model, target)
    if violations:
        name = get_target(target).name
        raise TargetError(f"the network breaks {len(violations)} {name} constraint(s): " + "; ".join(violations))
