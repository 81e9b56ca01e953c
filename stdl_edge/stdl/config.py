"""``TrainConfig``: every option of a training run, checked where it is made.

The CLI (flags and ``--config`` files) and the Python API build the same frozen object, so
both get the same one-line errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .auxiliary import METHODS


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (CLI flags and ``--config`` keys).

    dataset, model: names for ``stdl_edge.data.load_dataset`` and the model zoo.
    method: 'stdl', 'bptt', 'sltt' or 'local' (see :mod:`.trainer`).
    subnets: K; None = 4 for stdl/local, 1 for bptt/sltt. splits: explicit split points
        (first layer index of subnetworks 1..K-1); empty = balanced automatically.
    epochs, batch_size: passes over the training set, samples per optimizer step.
    lr: Adam learning rate (peak of the cosine schedule). weight_decay: Adam L2 term.
    seed: initial weights, heads and data order.
    steps: time steps T per sample (None = the data set's default); dt_us likewise (microseconds).
    budget_mb: memory budget of subnetwork + aux head in MiB (None = largest subnetwork alone).
    mse_weight: weight of the MSE(logits, one-hot) term in each step's loss (0 = CE only).
    online: optimizer step after every time step instead of once per batch.
    device: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...
    bf16: bfloat16 autocast for the forward pass (GPU; works on CPU too but slowly).
    limit: use a class-balanced subset of about ``limit`` samples of the data set (quick runs;
        split 80/20 into train and test like the full set; generated and cached on its own).
    width: channel multiplier of the model.
    threads: torch CPU threads while training (None = 1 on CPU: the per-step, per-subnetwork
        ops are small, and on a shared 2-core machine 2 threads measured 10-36x slower than 1
        from oversubscription; see docs/stdl.md). Restored afterwards. Ignored on CUDA.
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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        object.__setattr__(self, "splits", tuple(int(s) for s in self.splits))
        if self.subnets is None:
            k = len(self.splits) + 1 if self.splits else (4 if self.method in ("stdl", "local") else 1)
            object.__setattr__(self, "subnets", k)
        for name in ("epochs", "batch_size", "subnets"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr} must be > 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps {self.steps} must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit {self.limit} must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads {self.threads} must be >= 1")
        if self.mse_weight < 0:
            raise ValueError(f"--mse-weight {self.mse_weight} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["splits"] = list(self.splits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        d = dict(d)
        if "splits" in d and d["splits"] is not None:
            d["splits"] = tuple(d["splits"])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)
