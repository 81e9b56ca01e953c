"""A run's training checkpoint, ``checkpoint/``: what :func:`stdl_edge.stdl.train` resumes from.

Two files, each written atomically (temp file + rename), and never unpickled on reading::

    checkpoint/state.safetensors   tensors, metadata {"epoch": "<epochs completed>", "record": <state.json>}
        model.<name>               primary model state_dict
        aux.<k>.<name>             auxiliary head k
        opt.<i>.<key>              Adam state of parameter i (step, exp_avg, exp_avg_sq)
        rng.torch, rng.cuda.<d>    torch CPU / CUDA generator states (uint8 tensors)
    checkpoint/state.json          format_version, epoch, config (TrainConfig), model (ModelConfig),
                                   plan, aux_heads (head specs), optimizer_param_groups,
                                   scheduler (state_dict), history (metrics per epoch)

The tensors file carries the record in its metadata, so its one rename commits a whole epoch;
``state.json`` is the same record written after it, for people and tools. A kill between the
two leaves ``state.json`` one epoch behind (or absent after the first epoch), which resume
accepts; any other disagreement (files of different runs, edited by hand) is refused, as is
a truncated or corrupt file, with one line that says what to do. Checkpoints of earlier
versions (no record in the tensors) resume when the epochs of their two files agree.
Resuming restores weights, optimizer, schedule and RNG exactly: a resumed run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..artifact import CHECKPOINT_DIR
from ..checks import table
from ..io import FORMAT_VERSION, load_tensors, read_json, save_tensors, tensor_metadata, write_json
from ..layerspec import net_from_spec, net_spec
from ..models import ModelConfig, SpikingNet, build_model
from .auxiliary import Plan
from .config import TrainConfig

CHECKPOINT_TENSORS = "state.safetensors"
CHECKPOINT_RECORD = "state.json"
#: options that may differ between the interrupted and the resumed run (where, not what, it trains)
RESUMABLE_CHANGES = ("device", "threads", "pipeline", "dist_timeout_s")


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
    """Write ``folder/checkpoint/``: ``state.safetensors`` (weights, Adam moments, RNG and the
    record: the commit), then ``state.json`` (the record)."""
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
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    record = {
        "format_version": FORMAT_VERSION,
        "epoch": state.epoch,
        "config": config.to_dict(),
        "model": state.model.config.to_dict(),
        "plan": state.plan_record,  # as measured at the start (a restored Plan has no subnet table)
        "aux_heads": [net_spec(h) for h in state.heads],
        "optimizer_param_groups": groups,
        "scheduler": _jsonable(state.scheduler.state_dict()),
        "history": state.history,
    }
    save_tensors(folder / CHECKPOINT_TENSORS, tensors, metadata={"epoch": str(state.epoch), "record": json.dumps(record)})
    write_json(folder / CHECKPOINT_RECORD, record)


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
    """Whether ``folder`` holds a checkpoint (either of its files; :func:`load_checkpoint` checks them)."""
    ckpt = folder / CHECKPOINT_DIR
    return (ckpt / CHECKPOINT_TENSORS).exists() or (ckpt / CHECKPOINT_RECORD).exists()


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

    Raises ``ValueError`` (one line, naming the file and what to do) when it was started with
    other options than ``config`` (except :data:`RESUMABLE_CHANGES`), when a file is
    truncated or corrupt, or when its two files do not belong together (module docstring).
    """
    ckpt = folder / CHECKPOINT_DIR
    cannot = f"this checkpoint cannot be resumed: train into a new --out, or delete {folder} first"
    record, where = _checkpoint_record(ckpt, cannot)
    try:
        saved = type(config).from_dict(table(record["config"], "config")).to_dict()
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where} is corrupt ({_reason(e)}); {cannot}") from None
    diff = [k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES]
    if diff:
        raise ValueError(f"--resume: the run in {folder} was started with different "
                         f"{', '.join(f'{k}={saved[k]!r}' for k in diff)}; give the same options "
                         "or a new --out")
    try:
        tensors = load_tensors(ckpt / CHECKPOINT_TENSORS)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{e}; {cannot}") from None
    try:
        return _checkpoint(record, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # RuntimeError: torch's state-dict mismatch
        raise ValueError(f"{where} does not fit {ckpt / CHECKPOINT_TENSORS} or is corrupt ({_reason(e)}); "
                         f"{cannot}") from None


def _checkpoint_record(ckpt: Path, cannot: str) -> tuple[dict[str, Any], Path]:
    """The checkpoint's record and the file it was read from (see the module docstring)."""
    tensors_file, json_file = ckpt / CHECKPOINT_TENSORS, ckpt / CHECKPOINT_RECORD
    try:
        meta = tensor_metadata(tensors_file)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{e}; {cannot}") from None
    # with the record in the tensors, state.json is only a copy: without it, resume still can
    fix = (f"delete {json_file} to resume from {tensors_file}, or train into a new --out" if "record" in meta
           else cannot)
    try:
        listed = read_json(json_file) if json_file.exists() else None
    except ValueError as e:
        raise ValueError(f"{e}; {fix}") from None
    if listed is not None and not isinstance(listed, dict):
        raise ValueError(f"{json_file} is corrupt (not a table of fields); {fix}")
    if "record" in meta:
        try:
            record = table(json.loads(meta["record"]), "its record")
        except ValueError as e:
            raise ValueError(f"{tensors_file} is corrupt ({_reason(e)}); {cannot}") from None
        where, epoch = tensors_file, record.get("epoch")
        behind = listed is None or (isinstance(epoch, int) and listed.get("epoch") == epoch - 1)  # a kill between
        if not behind and listed != record:
            raise ValueError(f"{ckpt} is inconsistent ({json_file} of epoch {listed.get('epoch')} does not match "
                             f"{tensors_file} of epoch {epoch}): its files come from different writes; {fix}")
    else:  # written before the record moved into the tensors' metadata
        if listed is None:
            raise ValueError(f"{json_file} is missing; {cannot}")
        record, where = listed, json_file
        if meta.get("epoch") != str(listed.get("epoch")):
            raise ValueError(f"{ckpt} is inconsistent (tensors of epoch {meta.get('epoch')}, record of epoch "
                             f"{listed.get('epoch')}): the last write was interrupted; {cannot}")
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where} has format_version {record.get('format_version')!r}; this stdl-edge reads "
                         f"{FORMAT_VERSION}; {cannot}")
    return record, where


def _checkpoint(record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Checkpoint:
    """The :class:`Checkpoint` of a checked record and its tensors."""
    model = build_model(ModelConfig.from_dict(record["model"], where="model"))
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
    groups = [dict(g) for g in record["optimizer_param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return Checkpoint(int(record["epoch"]), model, plan, plan_d, {"state": opt_state, "param_groups": groups},
                      dict(record["scheduler"]), _prefixed(tensors, "rng.", keep=True), list(record["history"]))


def _reason(error: BaseException) -> str:
    """An exception as a short reason: the missing key, or the message's last line."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} entry"
    return str(error).strip().splitlines()[-1].strip() if str(error).strip() else type(error).__name__


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str, keep: bool = False) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...``, with the prefix removed (``keep=True``: kept)."""
    return {(k if keep else k[len(prefix):]): v for k, v in tensors.items() if k.startswith(prefix)}
