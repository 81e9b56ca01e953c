"""Model zoo. Every model is a flat sequence of layers so STDL can partition it.

``build_model(ModelConfig(...))`` returns a :class:`SpikingNet`. One time step::

    y, states = net.step(frame, states)       # frame (B, C, H, W), y (B, classes)

and a whole sequence ``net(frames)`` with ``frames`` of shape ``(T, B, C, H, W)``
returns the logits averaged over time ``(B, classes)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from .checks import boolean, fields_of, number, text, whole, wholes
from .layers import (AvgPool2d, Flatten, Layer, Readout, SpikingConv2d, SpikingDense,
                     SpikingResidualBlock, SumPool2d)
from .neuron import IF_PARAMS, CubaParams


@dataclass(frozen=True)
class ModelConfig:
    """What to build.

    arch: 'dvs-cnn' (small, Loihi-friendly), 'vgg11' or 'resnet' (GPU-scale), 'if-cnn' (the
        integrate-and-fire target preset: no leak, no bias, sum pooling), or 'custom': the
        network is ``layers``.
    input_shape: (channels, height, width) of one event frame; 2 polarity channels.
    num_classes: size of the readout.
    width: channel multiplier (1.0 = the published widths).
    batchnorm: BatchNorm after each synapse (folded away on export). None = arch default.
    neuron: CUBA parameters of every spiking layer.
    init_gain: synaptic weights of spiking layers start as ``N(0, (gain * theta)^2 / fan_in)``.
        torch's default (uniform, std ``1 / sqrt(3 fan_in)``) leaves binary event frames far
        below ``theta = 1``: dvs-cnn is silent from its second layer on. With gain 3 every
        layer fires 4-25 % of steps for input densities of 3-30 % (see docs/stdl.md).
    layers: for ``arch='custom'`` only, the layer specs (:func:`stdl_edge.layerspec.layer_spec`)
        in order; the first reads ``input_shape``, the last gives ``num_classes`` outputs. A
        network imported from NIR is saved this way.
    """

    arch: str = "dvs-cnn"
    input_shape: tuple[int, int, int] = (2, 34, 34)
    num_classes: int = 10
    width: float = 1.0
    batchnorm: bool | None = None
    neuron: CubaParams = field(default_factory=CubaParams)
    init_gain: float = 3.0
    layers: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(dict(s) for s in self.layers))
        if (self.arch == "custom") != bool(self.layers):
            raise ValueError("arch='custom' needs its layer specs in ModelConfig.layers, and only it takes them "
                             f"(got arch={self.arch!r} with {len(self.layers)} layer specs)")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown model {self.arch!r}; available: {', '.join(sorted(ARCHS))}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape={self.input_shape} must be (channels, height, width), all >= 1")
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be >= 2")
        if not self.width > 0:
            raise ValueError(f"width={self.width} must be > 0")
        if not self.init_gain > 0:
            raise ValueError(f"init_gain={self.init_gain} must be > 0")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["neuron"] = self.neuron.to_dict()
        if not self.layers:
            del d["layers"]  # zoo models: the record is as before
        else:
            d["layers"] = [dict(s) for s in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model") -> ModelConfig:
        """:meth:`to_dict` read back; one ``ValueError`` naming ``where.<field>`` for a missing,
        unknown or mistyped field (the ranges are checked on construction)."""
        d = fields_of(cls, d, where, required=("input_shape",))
        for name, check in (("arch", text), ("num_classes", whole), ("width", number), ("init_gain", number)):
            if name in d:
                d[name] = check(d[name], f"{where}.{name}")
        if d.get("batchnorm") is not None:
            d["batchnorm"] = boolean(d["batchnorm"], f"{where}.batchnorm")
        d["input_shape"] = wholes(d["input_shape"], f"{where}.input_shape", length=3)
        d["neuron"] = CubaParams.from_dict(d.get("neuron", {}), f"{where}.neuron")
        d["layers"] = tuple(d.get("layers", ()))
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


class SpikingNet(nn.Module):
    """A sequence of :class:`Layer`; state is a list with one entry per layer."""

    def __init__(self, layers: list[Layer], config: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.config = config
        for prev, nxt in zip(layers, layers[1:]):
            if tuple(prev.out_shape) != tuple(nxt.in_shape):
                raise ValueError(f"layer shapes do not chain: {prev.kind} gives {prev.out_shape}, "
                                 f"{nxt.kind} expects {nxt.in_shape}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.layers[0].in_shape)

    @property
    def num_classes(self) -> int:
        return int(self.layers[-1].out_shape[0])

    def layer_names(self) -> list[str]:
        """Stable names ``'<index>.<kind>'`` used in exports, tables and verify reports."""
        return [f"{i}.{layer.kind}" for i, layer in enumerate(self.layers)]

    def init_state(self, batch: int, device: torch.device | str | None = None) -> list[Any]:
        device = device if device is not None else next(self.parameters()).device
        return [layer.init_state(batch, device) for layer in self.layers]

    def step(self, x: torch.Tensor, states: list[Any], start: int = 0, stop: int | None = None,
             record: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[Any]]:
        """Run layers ``start:stop`` for one time step. ``states`` covers those layers only.

        If ``record`` is a list, each layer's output is appended to it.
        """
        layers = self.layers[start:stop]
        if len(states) != len(layers):
            raise ValueError(f"got {len(states)} layer states for {len(layers)} layers")
        new_states = []
        for layer, state in zip(layers, states):
            x, state = layer(x, state)
            new_states.append(state)
            if record is not None:
                record.append(x)
        return x, new_states

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (T, B, C, H, W)`` -> time-averaged readout ``(B, classes)``."""
        if frames.dim() != 5 or tuple(frames.shape[2:]) != self.input_shape:
            raise ValueError(f"expected frames of shape (T, B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(frames.shape)}")
        states = self.init_state(frames.shape[1], frames.device)
        total = 0
        for frame in frames:
            y, states = self.step(frame, states)
            total = total + y
        return total / frames.shape[0]


def _c(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _dvs_cnn(cfg: ModelConfig) -> list[Layer]:
    """Small Loihi-friendly CNN: 3 strided convs, a dense layer and the readout.

    Strided convolutions instead of pooling keep every layer expressible in netx.
    """
    bn = bool(cfg.batchnorm)
    n = cfg.neuron
    layers: list[Layer] = []
    shape = cfg.input_shape
    for ch in (16, 32, 64):
        layers.append(SpikingConv2d(shape, _c(ch, cfg.width), 3, stride=2, padding=1, batchnorm=bn, neuron=n))
        shape = layers[-1].out_shape
    layers.append(Flatten(shape))
    layers.append(SpikingDense(layers[-1].out_shape[0], _c(128, cfg.width), batchnorm=bn, neuron=n))
    layers.append(Readout(layers[-1].out_shape[0], cfg.num_classes))
    return layers


def _vgg11(cfg: ModelConfig) -> list[Layer]:
    """Spiking VGG-11: 8 conv layers with average pooling, one hidden dense layer."""
    bn = True if cfg.batchnorm is None else cfg.batchnorm
    n = cfg.neuron
    plan: list[int | str] = [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512]
    layers: list[Layer] = []
    shape = cfg.input_shape
    for item in plan:
        if item == "P":
            if shape[1] % 2 or shape[2] % 2:
                continue  # keep small inputs valid: pool only where the size halves exactly
            layers.append(AvgPool2d(shape, 2))
        else:
            layers.append(SpikingConv2d(shape, _c(int(item), cfg.width), 3, batchnorm=bn, neuron=n))
        shape = layers[-1].out_shape
    layers.append(AvgPool2d(shape, shape[1]) if shape[1] == shape[2] else Flatten(shape))
    shape = layers[-1].out_shape
    if len(shape) == 3:
        layers.append(Flatten(shape))
    layers.append(SpikingDense(layers[-1].out_shape[0], _c(512, cfg.width), batchnorm=bn, neuron=n))
    layers.append(Readout(layers[-1].out_shape[0], cfg.num_classes))
    return layers


def _resnet(cfg: ModelConfig) -> list[Layer]:
    """Spiking ResNet (ResNet-18 layout at width 1): stem conv, 4 stages of 2 basic blocks."""
    n = cfg.neuron
    layers: list[Layer] = [SpikingConv2d(cfg.input_shape, _c(64, cfg.width), 3, batchnorm=True, neuron=n)]
    shape = layers[-1].out_shape
    for stage, ch in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0 and min(shape[1:]) >= 2) else 1
            layers.append(SpikingResidualBlock(shape, _c(ch, cfg.width), stride, neuron=n))
            shape = layers[-1].out_shape
    if shape[1] == shape[2]:
        layers.append(AvgPool2d(shape, shape[1]))  # global average pooling
        shape = layers[-1].out_shape
    layers.append(Flatten(shape))
    layers.append(Readout(layers[-1].out_shape[0], cfg.num_classes))
    return layers


def _if_cnn(cfg: ModelConfig) -> list[Layer]:
    """The integrate-and-fire target preset (Speck-class chips): dvs-cnn's widths with IF
    neurons (no leak: :data:`~stdl_edge.neuron.IF_PARAMS` at ``cfg.neuron``'s threshold), no
    bias and no BatchNorm (it would fold into a bias), 2x2 sum pooling where a map halves
    exactly and a stride-2 convolution where it does not. ``stdl_edge.targets`` checks it.
    """
    if cfg.batchnorm:
        raise ValueError("if-cnn has no BatchNorm: it folds into a bias, which integrate-and-fire targets lack")
    n = replace(IF_PARAMS, threshold=cfg.neuron.threshold, surrogate=cfg.neuron.surrogate,
                surrogate_width=cfg.neuron.surrogate_width)
    layers: list[Layer] = []
    shape = cfg.input_shape
    for ch in (16, 32, 64):
        even = shape[1] % 2 == 0 and shape[2] % 2 == 0
        layers.append(SpikingConv2d(shape, _c(ch, cfg.width), 3, stride=1 if even else 2, padding=1, neuron=n))
        if even:
            layers.append(SumPool2d(layers[-1].out_shape, 2))
        shape = layers[-1].out_shape
    layers.append(Flatten(shape))
    layers.append(SpikingDense(layers[-1].out_shape[0], _c(128, cfg.width), neuron=n))
    layers.append(Readout(layers[-1].out_shape[0], cfg.num_classes, bias=False))
    return layers


def _custom(cfg: ModelConfig) -> list[Layer]:
    """The layers of ``cfg.layers`` (specs), checked against the input shape and classes."""
    from .layerspec import build_layer  # layerspec builds networks of these layers: it imports this module

    layers = [build_layer(spec) for spec in cfg.layers]
    if tuple(layers[0].in_shape) != cfg.input_shape or layers[-1].out_shape[0] != cfg.num_classes:
        raise ValueError(f"custom layers read {tuple(layers[0].in_shape)} and give {layers[-1].out_shape[0]} outputs; "
                         f"the config says input_shape={cfg.input_shape}, num_classes={cfg.num_classes}")
    return layers


ARCHS: dict[str, Callable[[ModelConfig], list[Layer]]] = {
    "dvs-cnn": _dvs_cnn,
    "vgg11": _vgg11,
    "resnet": _resnet,
    "if-cnn": _if_cnn,
    "custom": _custom,
}


def build_model(config: ModelConfig, seed: int | None = None) -> SpikingNet:
    """Build a fresh model; ``seed`` makes the initial weights reproducible."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SpikingNet(spiking_init(ARCHS[config.arch](config), config), config)
    return SpikingNet(spiking_init(ARCHS[config.arch](config), config), config)


def spiking_init(layers: list[Layer], config: ModelConfig) -> list[Layer]:
    """Re-draw the synaptic weights of spiking layers: ``N(0, (init_gain * theta)^2 / fan_in)``.

    The readout keeps torch's default (it integrates spike counts, it does not spike).
    """
    gain = config.init_gain * (config.neuron.threshold if config.neuron.spiking else 1.0)
    for layer in layers:
        if layer.kind == "readout":
            continue
        for m in layer.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, gain / m.weight[0].numel() ** 0.5)
    return layers
