"""Model zoo. Every model is a flat sequence of layers so STDL can partition it.

``build_model(ModelConfig(...))`` returns a :class:`SpikingNet`. One time step::

    y, states = net.step(frame, states)       # frame (B, C, H, W), y (B, classes)

and a whole sequence ``net(frames)`` with ``frames`` of shape ``(T, B, C, H, W)``
returns the logits averaged over time ``(B, classes)``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .checks import boolean, fields_of, number, text, whole, wholes
from .layers import Layer, Shape
from .netspec import (Conv, Dense, DenseRec, Flatten, LayerSpec, Pool, Readout, ResBlock, build_layers, out_shape,
                      parse_specs)
from .neuron import IF_PARAMS, CubaParams


@dataclass(frozen=True)
class ModelConfig:
    """What to build.

    arch: 'dvs-cnn' (small, Loihi-friendly), 'dvs-crnn' (dvs-cnn with a recurrent dense layer), 'vgg11' or 'resnet' (GPU-scale), 'if-cnn' (the
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


def _dvs_cnn(cfg: ModelConfig) -> list[LayerSpec]:
    """Small Loihi-friendly CNN: 3 strided convs, a dense layer and the readout.

    Strided convolutions instead of pooling keep every layer expressible in netx.
    """
    bn = bool(cfg.batchnorm)
    convs: list[LayerSpec] = [Conv(_c(ch, cfg.width), 3, stride=2, padding=1, batchnorm=bn) for ch in (16, 32, 64)]
    return convs + [Flatten(), Dense(_c(128, cfg.width), batchnorm=bn), Readout()]


def _dvs_crnn(cfg: ModelConfig) -> list[LayerSpec]:
    """dvs-cnn with its dense layer made recurrent (netx ``dense_rec``): the 3 strided convs, a
    recurrent dense layer that reads its own spikes of the step before, and the readout."""
    *convs, _, _ = _dvs_cnn(cfg)
    return convs + [DenseRec(_c(128, cfg.width), batchnorm=bool(cfg.batchnorm)), Readout()]


def _planned(specs: list[LayerSpec], spec: LayerSpec, shape: Shape) -> Shape:
    """Append ``spec`` to ``specs``; the shape after it."""
    specs.append(spec)
    return out_shape(spec, shape)


def _vgg11(cfg: ModelConfig) -> list[LayerSpec]:
    """Spiking VGG-11: 8 conv layers with average pooling, one hidden dense layer."""
    bn = True if cfg.batchnorm is None else cfg.batchnorm
    plan: list[int | str] = [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512]
    specs: list[LayerSpec] = []
    shape: Shape = cfg.input_shape
    for item in plan:
        if item == "P":
            if shape[1] % 2 or shape[2] % 2:
                continue  # keep small inputs valid: pool only where the size halves exactly
            shape = _planned(specs, Pool(2), shape)
        else:
            shape = _planned(specs, Conv(_c(int(item), cfg.width), 3, batchnorm=bn), shape)
    if shape[1] == shape[2]:
        specs.append(Pool(0))  # global average pooling
    return specs + [Flatten(), Dense(_c(512, cfg.width), batchnorm=bn), Readout()]


def _resnet(cfg: ModelConfig) -> list[LayerSpec]:
    """Spiking ResNet (ResNet-18 layout at width 1): stem conv, 4 stages of 2 basic blocks.

    BatchNorm unless ``cfg.batchnorm`` is False (then each conv has a bias instead)."""
    bn = cfg.batchnorm is not False
    specs: list[LayerSpec] = []
    shape = _planned(specs, Conv(_c(64, cfg.width), 3, batchnorm=bn), cfg.input_shape)
    for stage, ch in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0 and min(shape[1:]) >= 2) else 1
            shape = _planned(specs, ResBlock(_c(ch, cfg.width), stride, batchnorm=bn), shape)
    if shape[1] == shape[2]:
        specs.append(Pool(0))  # global average pooling
    return specs + [Flatten(), Readout()]


def _if_cnn(cfg: ModelConfig) -> list[LayerSpec]:
    """The integrate-and-fire target preset (Speck-class chips): dvs-cnn's widths with IF
    neurons (no leak: :data:`~stdl_edge.neuron.IF_PARAMS` at ``cfg.neuron``'s threshold,
    surrogate and reset), no bias and no BatchNorm (it would fold into a bias), 2x2 sum pooling
    where a map halves exactly and a stride-2 convolution where it does not.
    ``stdl_edge.targets`` checks it.
    """
    if cfg.batchnorm:
        raise ValueError("if-cnn has no BatchNorm: it folds into a bias, which integrate-and-fire targets lack")
    n = replace(IF_PARAMS, threshold=cfg.neuron.threshold, surrogate=cfg.neuron.surrogate,
                surrogate_width=cfg.neuron.surrogate_width, reset=cfg.neuron.reset)
    specs: list[LayerSpec] = []
    shape: Shape = cfg.input_shape
    for ch in (16, 32, 64):
        even = shape[1] % 2 == 0 and shape[2] % 2 == 0
        shape = _planned(specs, Conv(_c(ch, cfg.width), 3, stride=1 if even else 2, padding=1, neuron=n), shape)
        if even:
            shape = _planned(specs, Pool(2, "sum"), shape)
    return specs + [Flatten(), Dense(_c(128, cfg.width), neuron=n), Readout(bias=False)]


def _custom(cfg: ModelConfig) -> list[Layer]:
    """The layers of ``cfg.layers`` (specs), checked against the input shape and classes."""
    from .layerspec import build_layer  # layerspec builds networks of these layers: it imports this module

    layers = [build_layer(spec) for spec in cfg.layers]
    if tuple(layers[0].in_shape) != cfg.input_shape or layers[-1].out_shape[0] != cfg.num_classes:
        raise ValueError(f"custom layers read {tuple(layers[0].in_shape)} and give {layers[-1].out_shape[0]} outputs; "
                         f"the config says input_shape={cfg.input_shape}, num_classes={cfg.num_classes}")
    return layers


#: a model builder: the layer specs of a model for a config (input shape, classes, width, neuron)
ModelBuilder = Callable[[ModelConfig], Sequence[Any]]

#: the zoo, each a :data:`ModelBuilder`; 'custom' is a network recorded layer by layer (``layers``)
ARCHS: dict[str, Callable[[ModelConfig], Any]] = {
    "dvs-cnn": _dvs_cnn,
    "dvs-crnn": _dvs_crnn,
    "vgg11": _vgg11,
    "resnet": _resnet,
    "if-cnn": _if_cnn,
    "custom": _custom,
}

#: entry-point group of model plug-ins: ``name = "pkg.module:builder"``, a :data:`ModelBuilder`
#: or a list of layer specs
ENTRY_POINT_GROUP = "stdl_edge.models"
_REGISTERED: dict[str, ModelBuilder] = {}


def register_model(name: str, builder: ModelBuilder | Sequence[Any]) -> None:
    """Make ``name`` a model for training (``--model name``): ``builder`` is a :data:`ModelBuilder`
    or a list of layer specs (:mod:`stdl_edge.netspec`). Zoo names cannot be taken."""
    if name in ARCHS:
        raise ValueError(f"model name {name!r} is a zoo model; register yours under another name")
    _REGISTERED[name] = builder if callable(builder) else (lambda cfg, specs=tuple(builder): list(specs))


def unregister_model(name: str) -> None:
    """Remove a model :func:`register_model` added (no error when it is not there)."""
    _REGISTERED.pop(name, None)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def model_names() -> list[str]:
    """Every model name training takes: the zoo, registered models and installed plug-ins."""
    names = [n for n in ARCHS if n != "custom"] + list(_REGISTERED)
    return names + sorted(n for n in _entry_points() if n not in names)


def check_model_name(value: Any, what: str = "--model") -> str:
    """``value`` when it names a model (:func:`model_names`, or 'custom'); else one line listing them."""
    name = text(value, what)
    if name in ARCHS or name in _REGISTERED or name in _entry_points():
        return name
    raise ValueError(f"{what} {name!r} is unknown; use one of {', '.join(model_names())}, a .toml/.json model "
                     "file, or custom with a layer list")


def _builder(name: str) -> ModelBuilder:
    if name in _REGISTERED:
        return _REGISTERED[name]
    ep = _entry_points().get(name)
    if ep is None:
        check_model_name(name)
    try:
        target = ep.load()
    except Exception as e:  # a broken plug-in is the plug-in's fault: name it, whatever it raised
        raise ValueError(f"model plug-in {name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}") from None
    return target if callable(target) else (lambda cfg: list(target))


def _plugin_specs(name: str, base: ModelConfig) -> Sequence[Any]:
    """The layer specs the registered or plug-in model ``name`` gives for ``base``."""
    builder = _builder(name)
    try:
        return builder(base)
    except ValueError:
        raise
    except Exception as e:  # a plug-in's bug: name the plug-in, whatever it raised
        raise ValueError(f"model {name!r} failed to build its layers: {type(e).__name__}: {e}") from None


def resolve_model(name: str, base: ModelConfig, layers: Sequence[Any] = ()) -> ModelConfig:
    """The :class:`ModelConfig` of model ``name`` on ``base``'s input shape, classes, width,
    BatchNorm and neuron: a zoo model by its name; ``'custom'`` (the layer specs ``layers``), a
    registered model or a plug-in layer by layer (``arch='custom'``), so the run rebuilds it
    without the plug-in. A spec that does not fit raises one line naming it and the shapes."""
    from .layerspec import layer_spec  # (it imports this module)

    if name in ARCHS and name != "custom":
        return base.replace(arch=name)
    raw = layers if name == "custom" else _plugin_specs(name, base)
    specs = parse_specs(list(raw), "layers" if name == "custom" else f"model {name!r} layers")
    with torch.random.fork_rng(devices=[]):  # the layers here only carry their specs; no draw is used
        built = build_layers(specs, base.input_shape, base.num_classes, base.neuron, bool(base.batchnorm),
                             where="layers" if name == "custom" else f"{name}.layers")
    return base.replace(arch="custom", layers=tuple(layer_spec(layer) for layer in built))


def model_layers(config: ModelConfig) -> list[Layer]:
    """Fresh layers of ``config`` (torch's default initialisation)."""
    if config.arch == "custom":
        return _custom(config)
    return build_layers(ARCHS[config.arch](config), config.input_shape, config.num_classes, config.neuron,
                        where=f"{config.arch}.layers")


def build_model(config: ModelConfig, seed: int | None = None) -> SpikingNet:
    """Build a fresh model; ``seed`` makes the initial weights reproducible."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SpikingNet(spiking_init(model_layers(config), config), config)
    return SpikingNet(spiking_init(model_layers(config), config), config)


#: recurrent weights start at this fraction of ``init_gain`` (a choice, not tuned: at the full
#: gain the layer's own spikes would add about as much input as its feed-forward synapses)
RECURRENT_INIT = 1 / 3


def spiking_init(layers: list[Layer], config: ModelConfig) -> list[Layer]:
    """Re-draw the synaptic weights of spiking layers: ``N(0, (init_gain * theta)^2 / fan_in)``,
    recurrent ones (``dense_rec``) at :data:`RECURRENT_INIT` times that gain.

    The readout keeps torch's default (it integrates spike counts, it does not spike).
    """
    gain = config.init_gain * (config.neuron.threshold if config.neuron.spiking else 1.0)
    for layer in layers:
        if layer.kind == "readout":
            continue
        recurrent = getattr(layer, "recurrent", None)
        for m in layer.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                g = gain * (RECURRENT_INIT if m is recurrent else 1.0)
                nn.init.normal_(m.weight, 0.0, g / m.weight[0].numel() ** 0.5)
    return layers
