"""``TrainConfig``: every option of a training run, checked where it is made.

The CLI (flags and ``--config`` files) and the Python API build the same frozen object, so
both get the same one-line errors (:mod:`stdl_edge.checks`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Any, Callable

import torch

from ..checks import boolean, number, table, text, whole, wholes
from ..datasets.augment import parse_augment
from ..datasets.folder import canonical, is_folder_name
from ..datasets.loader import MODES as LOADER_MODES, choose_loader
from ..datasets.windows import SLICE_BY
from ..models import ModelConfig, check_model_name
from ..netspec import parse_specs, spec_dict
from ..neuron import RESETS, SURROGATES, CubaParams, decay_of
from .auxiliary import METHODS
from .engine import TEMPORAL_CREDITS

#: the temporal credit ``stdl`` trains with when none is given (the evidence: docs/stdl.md)
STDL_CREDIT = "window"
#: steps per window of ``temporal_credit='window'`` when none is given
DEFAULT_WINDOW = 2


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (CLI flags and ``--config`` keys).

    dataset, model: names for ``stdl_edge.data.load_dataset`` and the model zoo.
    method: 'stdl', 'bptt', 'sltt' or 'local' (see :mod:`.trainer`).
    subnets: K; None = 4 for stdl/local, 1 for bptt/sltt. splits: explicit split points
        (first layer index of subnetworks 1..K-1); empty = balanced automatically.
    epochs, batch_size: passes over the training set, samples per optimizer step.
    lr: Adam learning rate (peak of the cosine schedule), in (0, 1000]: a larger step (in weight
        units per batch) only diverges, and above about 1e37 float32 overflows. weight_decay: Adam L2 term.
    seed: initial weights, heads and data order, in [0, 2**32).
    steps: time steps T per sample (None = the data set's default); dt_us likewise (microseconds).
    budget_mb: per-step memory budget (saved tensors + carried state) of subnetwork + aux head in MiB
        (None = 2 x the largest subnetwork alone).
    mse_weight: weight of the MSE(logits, one-hot) term in each step's loss (0 = CE only).
    online: optimizer step after every time step instead of once per batch.
    device: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...
    bf16: bfloat16 autocast for the forward pass (GPU; works on CPU too but slowly).
    limit: use a class-balanced subset of about ``limit`` samples of the data set (quick runs;
        split 80/20 into train and test like the full set; generated and cached on its own).
    width: channel multiplier of the model.
    temporal_credit: how a decoupled method credits earlier steps: 'none' (state detached every
        step), 'trace' (presynaptic eligibility traces) or 'window' (BPTT inside windows of
        ``window`` steps); see :mod:`.engine`. None = the method's default (:attr:`credit`):
        :data:`STDL_CREDIT` for stdl, 'none' for local and sltt; bptt credits all of T.
    window: steps per window of 'window' (None = :data:`DEFAULT_WINDOW`); only with 'window'.
    threads: torch CPU threads while training (None = 1 on CPU: the per-step, per-subnetwork
        ops are small, and on a shared 2-core machine 2 threads measured 10-36x slower than 1
        from oversubscription; see docs/stdl.md). Restored afterwards. Ignored on CUDA.
    data_root: folder of the tonic data sets (None = ``$STDL_EDGE_DATA_ROOT``, docs/data.md).
    sensor_size: (W, H) of a ``folder:PATH`` data set whose files do not say it.
    slice_by, slice_length, slice_overlap: cut recordings into windows, by "time" (microseconds)
        or "events" (event counts) (:class:`stdl_edge.datasets.Slicing`); None = one sample per recording.
    augment: tonic transforms for training samples (:mod:`stdl_edge.datasets.augment`), a list of
        ``{"name": ..., <param>: ...}`` or the ``--augment`` text; seeded by ``seed``.
    loader: "memory" (the split binned in memory), "stream" (DataLoader, binned on the fly) or
        "cache" (DataLoader over the disk cache of binned frames); "auto" = memory for generated
        sets, stream with ``augment``, else cache. workers: DataLoader worker processes.
    skip_bad: leave unreadable recordings out (counted) instead of stopping.

    The neuron and the network (None: the model's default, :class:`~stdl_edge.neuron.CubaParams`):
    threshold: ``theta``. current_decay, voltage_decay: ``a_u``, ``a_v`` per step in [0, 1];
    or tau_current_us, tau_voltage_us: time constants in microseconds, ``a = dt / tau`` at the run's
    ``dt`` (one of each pair). surrogate: 'triangle' or 'atan'; surrogate_width: in units of theta.
    reset: 'zero' (Loihi's CUBA) or 'subtract' (ONNX only). batchnorm: BatchNorm after each synapse.
    layers: the network as layer specs (:mod:`stdl_edge.netspec`, dicts or spec objects) with
    ``model='custom'``; ``width`` does not scale them.

    Conveniences: val_fraction: hold out this stratified, seeded fraction of the training set
    as the validation set that picks the best epoch and early stopping (None: the test set does).
    patience: stop when that accuracy has not improved for this many epochs. save_best: keep
    the best epoch's run artifact in ``best/``. tensorboard: log every epoch to ``tensorboard/``
    (needs the ``tensorboard`` package: ``pip install 'stdl-edge[tensorboard]'``).

    pipeline: G, stages of the decoupled pipeline per data-parallel replica under torchrun
        (:mod:`.distributed`; 1 = data parallel only). dist_timeout_s: seconds a collective
        waits for the other ranks before the run stops with one line. Both say where, not
        what, it trains: a resumed run may change them.

    Every option is checked on construction (the Python API and ``--config`` alike): a count is
    a whole number (``2.0`` is taken as 2, ``1.5`` and ``true`` are refused), a rate a finite
    number, a name text; a bad one raises one ``ValueError`` naming it and the allowed range.
    """

    dataset: str = "digits-dvs"
    model: str = "dvs-cnn"
    method: str = "stdl"
    subnets: int | None = None
    splits: tuple[int, ...] = ()
    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    steps: int | None = None
    dt_us: int | None = None
    budget_mb: float | None = None
    mse_weight: float = 0.0
    online: bool = False
    device: str = "auto"
    bf16: bool = False
    limit: int | None = None
    width: float = 1.0
    threads: int | None = None
    data_root: str | None = None
    sensor_size: tuple[int, ...] | None = None
    slice_by: str | None = None
    slice_length: int | None = None
    slice_overlap: int = 0
    augment: tuple[dict[str, Any], ...] = ()
    loader: str = "auto"
    workers: int = 0
    skip_bad: bool = False
    # the neuron and the network (issue 11)
    threshold: float | None = None
    current_decay: float | None = None
    voltage_decay: float | None = None
    tau_current_us: float | None = None
    tau_voltage_us: float | None = None
    surrogate: str | None = None
    surrogate_width: float | None = None
    reset: str | None = None
    batchnorm: bool | None = None
    layers: tuple[dict[str, Any], ...] = ()
    # training conveniences (issue 11)
    val_fraction: float | None = None
    patience: int | None = None
    save_best: bool = False
    tensorboard: bool = False
    pipeline: int = 1
    dist_timeout_s: float = 300.0
    temporal_credit: str | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        """Check every option (type and range, one line naming it) and normalise it (``2.0`` -> 2)."""
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                object.__setattr__(self, name, check(value, "--" + name.replace("_", "-")))
        object.__setattr__(self, "augment", parse_augment(self.augment))
        if is_folder_name(self.dataset):  # recorded absolute, so verify and run find it from anywhere
            object.__setattr__(self, "dataset", canonical(self.dataset))
        if self.augment and self.loader != "auto":
            choose_loader(self.loader, generated=False, augment=True)  # augmenting needs the stream loader
        if (self.slice_by is None) != (self.slice_length is None):
            raise ValueError("--slice-by and --slice-length go together, e.g. --slice-by time --slice-length 1500000")
        layers = tuple(spec_dict(s) for s in parse_specs(self.layers, "layers")) if self.layers else ()
        object.__setattr__(self, "layers", layers)
        if (self.model == "custom") != bool(layers):
            raise ValueError("a network given as layers needs model='custom', and only it takes them (got "
                             f"--model {self.model} with {len(layers)} layers)")
        if layers and self.width != 1.0:
            raise ValueError(f"--width {self.width:g} scales the zoo models only; a layer list gives its channels")
        for rate, tau in (("current_decay", "tau_current_us"), ("voltage_decay", "tau_voltage_us")):
            if getattr(self, rate) is not None and getattr(self, tau) is not None:
                raise ValueError(f"--{rate.replace('_', '-')} and --{tau.replace('_', '-')} both set the same decay; "
                                 "give one")
        self.neuron(self.dt_us or 1)  # the ranges, before anything runs (dt is checked again at the build)
        if self.subnets is None:
            k = len(self.splits) + 1 if self.splits else (4 if self.method in ("stdl", "local") else 1)
            object.__setattr__(self, "subnets", k)
        if self.pipeline > self.subnets:
            raise ValueError(f"--pipeline {self.pipeline} needs at least {self.pipeline} subnetworks, one per stage; "
                             f"this run has {self.subnets} (raise --subnets, with --method stdl or local)")
        self._check_credit()
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"--device {self.device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None

    def neuron(self, dt_us: int | None) -> CubaParams:
        """The CUBA parameters of the spiking layers at a step of ``dt_us`` microseconds (the
        defaults where an option is None)."""
        d = CubaParams().to_dict()
        for name in ("threshold", "current_decay", "voltage_decay", "surrogate", "surrogate_width", "reset"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        for rate, tau in (("current_decay", "tau_current_us"), ("voltage_decay", "tau_voltage_us")):
            if getattr(self, tau) is not None:
                if dt_us is None:
                    raise ValueError(f"--{tau.replace('_', '-')} needs the time step: give --dt-us")
                d[rate] = decay_of(getattr(self, tau), dt_us, f"--{tau.replace('_', '-')}")
        return CubaParams.from_dict(d)

    def model_config(self, input_shape: tuple[int, int, int], num_classes: int, dt_us: int | None) -> ModelConfig:
        """The :class:`~stdl_edge.models.ModelConfig` to build for data of ``input_shape``,
        ``num_classes`` classes and a step of ``dt_us`` (a plug-in or layer list layer by layer)."""
        from ..models import resolve_model

        base = ModelConfig(input_shape=input_shape, num_classes=num_classes, width=self.width,
                           batchnorm=self.batchnorm, neuron=self.neuron(dt_us))
        return resolve_model(self.model, base, self.layers)

    @property
    def credit(self) -> str:
        """The temporal credit the run uses (``temporal_credit`` or the method's default)."""
        if self.temporal_credit is not None:
            return self.temporal_credit
        return STDL_CREDIT if self.method == "stdl" else "none"

    @property
    def credit_window(self) -> int:
        """Steps per window of ``credit == 'window'`` (1 otherwise: unused)."""
        if self.credit != "window":
            return 1
        return self.window if self.window is not None else DEFAULT_WINDOW

    def _check_credit(self) -> None:
        if self.method == "bptt" and self.temporal_credit not in (None, "none"):
            raise ValueError(f"--temporal-credit {self.temporal_credit} is for the decoupled methods; bptt credits "
                             "every step already (drop it, or use --method sltt/local/stdl)")
        if self.window is not None and self.credit != "window":
            raise ValueError(f"--window {self.window} is only used with --temporal-credit window "
                             f"(it is {self.credit})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["splits"] = list(self.splits)
        d["augment"] = [dict(a) for a in self.augment]
        d["sensor_size"] = None if self.sensor_size is None else list(self.sensor_size)
        d["layers"] = [dict(s) for s in self.layers]
        return d

    def data_options(self) -> dict[str, Any]:
        """The ``load_dataset`` options of this run's data set (root, sensor size, slicing, skip_bad)."""
        from ..datasets import load_options

        return load_options(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = table(d, "the training options")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if d.get("layers") and "model" not in d:
            d = {**d, "model": "custom"}  # a layer list is the model
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


#: suffixes of a model file (:func:`stdl_edge.netspec.read_model_file`) given as the model
MODEL_FILE_SUFFIXES = (".toml", ".json")


def with_model_file(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with a ``model`` naming a ``.toml``/``.json`` file replaced by its layer list
    (``model='custom'``, ``layers=[...]``), so the run records the layers, not the path."""
    model = options.get("model")
    if not (isinstance(model, str) and model.lower().endswith(MODEL_FILE_SUFFIXES)):
        return options
    from ..netspec import read_model_file

    return {**options, "model": "custom", "layers": read_model_file(model)}


#: TrainConfig's checks by option (see stdl_edge.checks); the seed range is numpy's
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "dataset": text, "model": check_model_name, "method": partial(text, choices=METHODS),
    "subnets": partial(whole, minimum=1), "splits": partial(wholes, minimum=1),
    "epochs": partial(whole, minimum=1), "batch_size": partial(whole, minimum=1),
    "lr": partial(number, above=0, maximum=1e3), "weight_decay": partial(number, minimum=0),
    "seed": partial(whole, minimum=0, maximum=2 ** 32 - 1), "steps": partial(whole, minimum=1),
    "dt_us": partial(whole, minimum=1), "budget_mb": partial(number, above=0),
    "mse_weight": partial(number, minimum=0), "online": boolean, "device": text, "bf16": boolean,
    "limit": partial(whole, minimum=1), "width": partial(number, above=0), "threads": partial(whole, minimum=1),
    "data_root": text, "sensor_size": partial(wholes, length=2, minimum=1),
    "slice_by": partial(text, choices=SLICE_BY), "slice_length": partial(whole, minimum=1),
    "slice_overlap": partial(whole, minimum=0), "loader": partial(text, choices=("auto", "memory", *LOADER_MODES)),
    "workers": partial(whole, minimum=0), "skip_bad": boolean,
    "threshold": partial(number, above=0), "current_decay": partial(number, minimum=0, maximum=1),
    "voltage_decay": partial(number, minimum=0, maximum=1), "tau_current_us": partial(number, above=0),
    "tau_voltage_us": partial(number, above=0), "surrogate": partial(text, choices=SURROGATES),
    "surrogate_width": partial(number, above=0), "reset": partial(text, choices=RESETS), "batchnorm": boolean,
    "val_fraction": partial(number, above=0, maximum=0.5), "patience": partial(whole, minimum=1),
    "save_best": boolean, "tensorboard": boolean,
    "pipeline": partial(whole, minimum=1), "dist_timeout_s": partial(number, above=0, maximum=86400),
    "temporal_credit": partial(text, choices=TEMPORAL_CREDITS), "window": partial(whole, minimum=1),
}
#: options where None means "the default"
_OPTIONAL = ("subnets", "steps", "dt_us", "budget_mb", "limit", "threads", "threshold", "current_decay",
             "voltage_decay", "tau_current_us", "tau_voltage_us", "surrogate", "surrogate_width", "reset",
             "batchnorm", "val_fraction", "patience", "data_root", "sensor_size", "slice_by", "slice_length",
             "temporal_credit", "window")
