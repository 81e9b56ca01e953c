"""A run's training checkpoint, ``checkpoint/``: what :func:`stdl_edge.stdl.train` resumes from.

Two files, each written atomically (temp file + rename), and never unpickled on reading::

    checkpoint/state.safetensors   tensors, metadata {"epoch": "<epochs completed>"}
        model.<name>               primary model state_dict
        aux.<k>.<name>             auxiliary head k
        opt.<i>.<key>              Adam state of parameter i (step, exp_avg, exp_avg_sq)
        rng.torch, rng.cuda.<d>    torch CPU / CUDA generator states (uint8 tensors)
    checkpoint/state.json          format_version, epoch, config (TrainConfig), model (ModelConfig),
                                   plan, aux_heads (head specs), optimizer_param_groups,
                                   scheduler (state_dict), history (metrics per epoch)

The JSON is written last and names the epoch of the tensors, so a crash between the two
writes is detected on resume instead of mixing epochs. Resuming restores weights, optimizer,
schedule and RNG exactly: a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..artifact import CHECKPOINT_DIR
from ..io import FORMAT_VERSION, load_tensors, read_json, save_tensors, write_json
from ..layerspec import net_from_spec, net_spec
from ..models import ModelConfig, SpikingNet, build_model
from .auxiliary import Plan

if TYPE_CHECKING:
    from .trainer import TrainConfig

CHECKPOINT_TENSORS = "state.safetensors"
CHECKPOINT_RECORD = "state.json"
#: options that may differ between the interrupted and the resumed run (where, not what, it trains)
RESUMABLE_CHANGES = ("device", "threads")


class RunExistsError(ValueError):
    """The output folder already holds a run (a user error: exit 2 with one line)."""


@dataclass
class TrainState:
    """Everything that changes during training (what a checkpoint holds)."""

    model: SpikingNet
    plan: Plan
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    plan_record: dict[str, Any] = field(default_factory=dict)  # the plan table as measured at the start

    @property
    def heads(self) -> list[SpikingNet]:
        return self.plan.heads

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.model.parameters())
        for head in self.heads:
            params += list(head.parameters())
        return params


def save_checkpoint(folder: Path, state: TrainState, config: TrainConfig) -> None:
    """Write ``folder/checkpoint/``: ``state.safetensors`` (weights, Adam moments, RNG), then ``state.json``."""
    folder = folder / CHECKPOINT_DIR
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    for i, head in enumerate(state.heads):
        tensors.update({f"aux.{i}.{k}": v for k, v in head.state_dict().items()})
    opt = state.optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_tensors(folder / CHECKPOINT_TENSORS, tensors, metadata={"epoch": str(state.epoch)})
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    write_json(folder / CHECKPOINT_RECORD, {
        "format_version": FORMAT_VERSION,
        "epoch": state.epoch,
        "config": config.to_dict(),
        "model": state.model.config.to_dict(),
        "plan": state.plan.to_dict(),
        "aux_heads": [net_spec(h) for h in state.heads],
        "optimizer_param_groups": groups,
        "scheduler": _jsonable(state.scheduler.state_dict()),
        "history": state.history,
    })


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back: the model and plan rebuilt with their weights, the rest as saved.

    Build the optimizer and schedule for ``model`` and ``plan`` (on the training device),
    then :meth:`restore` their states, the RNG, the epoch and the history into them.
    """

    epoch: int  # epochs completed
    model: SpikingNet
    plan: Plan  # with the auxiliary heads, weights loaded
    plan_record: dict[str, Any]
    optimizer: dict[str, Any]  # torch.optim.Optimizer.state_dict() form
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]  # 'rng.torch', 'rng.cuda.<d>': uint8 generator states
    history: list[dict[str, Any]]

    def restore(self, state: TrainState) -> TrainState:
        """Load optimizer, schedule, epoch and history into ``state``, and set the RNG (last)."""
        state.plan_record = self.plan_record
        state.optimizer.load_state_dict(self.optimizer)
        state.scheduler.load_state_dict(self.scheduler)
        torch.set_rng_state(self.rng["rng.torch"])
        cuda_states = [self.rng[k] for k in sorted(k for k in self.rng if k.startswith("rng.cuda."))]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        state.epoch = self.epoch
        state.history = list(self.history)
        return state


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint (its ``state.json``: written last, so complete)."""
    return (folder / CHECKPOINT_DIR / CHECKPOINT_RECORD).exists()


def resume_from(folder: Path, config: TrainConfig, resume: bool) -> Checkpoint | None:
    """The checkpoint a run in ``folder`` continues from (``resume=True``), or None for a fresh run.

    Raises :class:`RunExistsError` when a fresh run would overwrite one, and
    ``FileNotFoundError`` when there is nothing to resume.
    """
    if has_checkpoint(folder):
        if resume:
            return load_checkpoint(folder, config)
        raise RunExistsError(f"{folder} already holds a run; pass --resume to continue it or pick a new --out")
    if resume:
        raise FileNotFoundError(f"--resume: {folder / CHECKPOINT_DIR} has no checkpoint; start without --resume")
    return None


def load_checkpoint(folder: Path, config: TrainConfig) -> Checkpoint:
    """Read the checkpoint :func:`save_checkpoint` wrote into ``folder`` (no unpickling).

    Raises ``ValueError`` when it was started with other options than ``config`` (except
    :data:`RESUMABLE_CHANGES`) or when its two files belong to different epochs.
    """
    ckpt = folder / CHECKPOINT_DIR
    record = read_json(ckpt / CHECKPOINT_RECORD)
    saved = type(config).from_dict(record["config"]).to_dict()
    diff = [k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES]
    if diff:
        raise ValueError(f"--resume: the run in {folder} was started with different "
                         f"{', '.join(f'{k}={saved[k]!r}' for k in diff)}; give the same options "
                         "or a new --out")
    from safetensors import safe_open

    with safe_open(str(ckpt / CHECKPOINT_TENSORS), framework="pt") as f:
        tensor_epoch = (f.metadata() or {}).get("epoch")
    if tensor_epoch != str(record["epoch"]):
        raise ValueError(f"{ckpt} is inconsistent (tensors of epoch {tensor_epoch}, record of epoch "
                         f"{record['epoch']}); the last write was interrupted — start again without --resume")
    tensors = load_tensors(ckpt / CHECKPOINT_TENSORS)
    model = build_model(ModelConfig.from_dict(record["model"]))
    model.load_state_dict(_prefixed(tensors, "model."))
    heads = [net_from_spec(spec, model) for spec in record["aux_heads"]]
    for i, head in enumerate(heads):
        head.load_state_dict(_prefixed(tensors, f"aux.{i}."))
    plan_d = record["plan"]
    plan = Plan(plan_d["method"], [tuple(b) for b in plan_d["boundaries"]], plan_d["batch"],
                plan_d["budget_bytes"], [], heads)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in _prefixed(tensors, "opt.").items():
        idx, key = name.split(".", 1)
        opt_state.setdefault(int(idx), {})[key] = value
    groups = record["optimizer_param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return Checkpoint(int(record["epoch"]), model, plan, plan_d, {"state": opt_state, "param_groups": groups},
                      record["scheduler"], _prefixed(tensors, "rng.", keep=True), list(record["history"]))


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str, keep: bool = False) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...``, with the prefix removed (``keep=True``: kept)."""
    return {(k if keep else k[len(prefix):]): v for k, v in tensors.items() if k.startswith(prefix)}
