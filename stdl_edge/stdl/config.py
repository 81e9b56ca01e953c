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
from ..models import ARCHS
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
    budget_mb: memory budget of subnetwork + aux head in MiB (None = 2 x the largest subnetwork alone).
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
    temporal_credit: str | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        """Check every option (type and range, one line naming it) and normalise it (``2.0`` -> 2)."""
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                object.__setattr__(self, name, check(value, "--" + name.replace("_", "-")))
        if self.subnets is None:
            k = len(self.splits) + 1 if self.splits else (4 if self.method in ("stdl", "local") else 1)
            object.__setattr__(self, "subnets", k)
        self._check_credit()
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"--device {self.device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None

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
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = table(d, "the training options")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


#: TrainConfig's checks by option (see stdl_edge.checks); the seed range is numpy's
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "dataset": text, "model": partial(text, choices=tuple(ARCHS)), "method": partial(text, choices=METHODS),
    "subnets": partial(whole, minimum=1), "splits": partial(wholes, minimum=1),
    "epochs": partial(whole, minimum=1), "batch_size": partial(whole, minimum=1),
    "lr": partial(number, above=0, maximum=1e3), "weight_decay": partial(number, minimum=0),
    "seed": partial(whole, minimum=0, maximum=2 ** 32 - 1), "steps": partial(whole, minimum=1),
    "dt_us": partial(whole, minimum=1), "budget_mb": partial(number, above=0),
    "mse_weight": partial(number, minimum=0), "online": boolean, "device": text, "bf16": boolean,
    "limit": partial(whole, minimum=1), "width": partial(number, above=0), "threads": partial(whole, minimum=1),
    "temporal_credit": partial(text, choices=TEMPORAL_CREDITS), "window": partial(whole, minimum=1),
}
#: options where None means "the default"
_OPTIONAL = ("subnets", "steps", "dt_us", "budget_mb", "limit", "threads", "temporal_credit", "window")
