"""The one trainer behind ``stdl``, ``bptt``, ``sltt`` and ``local``.

=========  =========================  ===============  ==================================
method     subnetworks                time steps       heads of subnetworks k < K
=========  =========================  ===============  ==================================
``stdl``   K (balanced or --splits)   decoupled        AugLocal aux nets within the budget
``local``  K                          decoupled        global pool + linear readout only
``sltt``   1                          decoupled        (none)
``bptt``   1                          full graph       (none)
=========  =========================  ===============  ==================================

``local`` decouples time as well, so it differs from ``stdl`` only in the heads: the
pair isolates what the auxiliary layers buy. All methods see the same data order
(a permutation seeded by ``(seed, epoch)``) and the same initial weights (``seed``),
so they compare side by side.

Optimiser: Adam (``lr``, ``weight_decay``), cosine learning rate over all batches,
one optimizer step per batch (or per time step with ``online=True``).

Every epoch writes ``checkpoint/`` (:mod:`.checkpoint`: safetensors + JSON with weights,
Adam moments, scheduler, RNG, history), ``metrics.jsonl``, plots and the run artifact
(``model.json``, ``model.safetensors``, ``aux.safetensors``); ``resume=True`` continues
from the checkpoint and ends with the same weights as an uninterrupted run, wherever a kill
fell among those writes (:func:`_write_epoch`). The options are :class:`.config.TrainConfig`.

Before the first epoch, ``out`` must be a writable folder; a loss or weight that stops being
finite ends the run with :class:`TrainingDiverged`; a full disk with
:class:`~stdl_edge.io.DiskFullError` naming the file (the last checkpoint stays intact).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..artifact import RunFolder, StreamInfo, save_run
from ..data import TensorData, load_dataset, materialize
from ..io import DiskFullError, atomic_path, check_writable, remove_temp_files
from ..models import ModelConfig, SpikingNet, build_model
from .auxiliary import Plan, make_plan
from .checkpoint import TrainState, has_checkpoint, resume_from, save_checkpoint
from .config import TrainConfig
from .engine import evaluate_batch, train_batch
from .memory import MemoryReport, SavedTensorMeter, mb, optimizer_bytes, param_bytes


class TrainingDiverged(ValueError):
    """The training loss or a weight became NaN or infinite (the learning rate is too high)."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; a clear error for an unavailable CUDA (``name``
    itself is checked by :class:`TrainConfig`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return device


# ----------------------------------------------------------------------------------- data


def load_split(config: TrainConfig, split: str) -> tuple[TensorData, StreamInfo]:
    """The ``split`` of ``config.dataset`` in memory, with its :class:`StreamInfo`."""
    ds = load_dataset(config.dataset, split, num_steps=config.steps, dt_us=config.dt_us, seed=0,
                      limit=config.limit)
    return materialize(ds), ds.stream


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Data order of ``epoch``: a permutation depending only on ``(seed, epoch)``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


# ----------------------------------------------------------------------------------- state


def build_state(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int,
                batches_per_epoch: int, device: torch.device) -> TrainState:
    """Fresh model (seeded), plan with heads, Adam and the cosine schedule."""
    model_cfg = ModelConfig(arch=config.model, input_shape=input_shape, num_classes=num_classes,
                            width=config.width)
    model = build_model(model_cfg, seed=config.seed)
    plan = make_plan(model, config.method, config.subnets if config.method in ("stdl", "local") else 1,
                     list(config.splits) or None, config.budget_mb, config.batch_size, config.seed)
    return _finish_state(config, model, plan, batches_per_epoch, device)


def _finish_state(config: TrainConfig, model: SpikingNet, plan: Plan, batches_per_epoch: int,
                  device: torch.device) -> TrainState:
    model.to(device)
    for head in plan.heads:
        head.to(device)
    params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    total = max(1, config.epochs * batches_per_epoch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=config.lr * 0.01)
    return TrainState(model, plan, optimizer, scheduler, plan_record=plan.to_dict())


# ----------------------------------------------------------------------------------- loop


@dataclass
class EpochMetrics:
    """One line of ``metrics.jsonl``."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_acc: float
    exit_acc: list[float]  # test accuracy of each auxiliary head (early exit k), k = 0..K-2
    subnet_loss: list[float]  # mean per-batch training loss of each subnetwork
    memory: dict[str, int]  # MemoryReport.to_dict()
    firing_rate: dict[str, float]  # test-set spikes per neuron per step, by layer
    epoch_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_epoch(state: TrainState, data: TensorData, config: TrainConfig, device: torch.device,
              epoch: int, progress: Callable[[int, int], None] | None = None) -> tuple[float, float, list[float], MemoryReport]:
    """One pass over ``data`` in the order of :func:`epoch_order`; returns loss, accuracy, per-subnet loss, memory."""
    model, heads = state.model, state.heads
    model.train()
    for h in heads:
        h.train()
    params = state.parameters()
    temporal = state.plan.temporal
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else None
    order = epoch_order(len(data), config.seed, epoch)
    n_batches = math.ceil(len(data) / config.batch_size)
    loss_sum, correct, seen = 0.0, 0, 0
    subnet_sum = [0.0] * len(state.plan.boundaries)
    peak_act = peak_state = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    opt = state.optimizer

    def online_step(t: int) -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    for b in range(n_batches):
        index = order[b * config.batch_size:(b + 1) * config.batch_size]
        frames, labels = data.batch(index, device)
        opt.zero_grad(set_to_none=True)
        with SavedTensorMeter(exclude=params) as meter:
            result = train_batch(model, heads, state.plan.boundaries, frames, labels, temporal=temporal,
                                 credit=config.credit, window=config.credit_window,
                                 mse_weight=config.mse_weight, autocast=autocast,
                                 on_step=online_step if config.online else None)
        peak_act = max(peak_act, meter.peak)
        peak_state = max(peak_state, result.state_bytes)
        if not config.online:
            opt.step()
        state.scheduler.step()
        if not math.isfinite(result.loss):
            raise TrainingDiverged(f"training diverged at epoch {epoch + 1}, batch {b + 1}/{n_batches}: the loss is "
                                   f"{result.loss}; train again with a lower --lr (now {config.lr:g}) into a new --out")
        loss_sum += result.loss
        subnet_sum = [s + v for s, v in zip(subnet_sum, result.subnet_loss)]
        correct += int((result.logits.argmax(1) == labels).sum())
        seen += len(labels)
        if progress is not None:
            progress(b + 1, n_batches)
    bad = next((name for name, p in _named_parameters(state) if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise TrainingDiverged(f"training diverged at epoch {epoch + 1}: parameter {bad} is no longer finite after "
                               f"batch {n_batches}/{n_batches}; train again with a lower --lr (now {config.lr:g}) "
                               "into a new --out")
    memory = MemoryReport(
        # every parameter gets a gradient of its own size during the step
        activation_bytes=peak_act, state_bytes=peak_state, param_bytes=param_bytes(params), grad_bytes=param_bytes(params),
        optimizer_bytes=optimizer_bytes(opt),
        cuda_max_allocated=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0)
    return loss_sum / n_batches, correct / max(seen, 1), [s / n_batches for s in subnet_sum], memory


def _named_parameters(state: TrainState) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """The model's parameters, then each head's (``aux<k>.<name>``)."""
    yield from state.model.named_parameters()
    for k, head in enumerate(state.heads):
        yield from ((f"aux{k}.{name}", p) for name, p in head.named_parameters())


def evaluate(model: SpikingNet, heads: list[SpikingNet], boundaries: list[tuple[int, int]], data: TensorData,
             device: torch.device, batch_size: int = 128) -> tuple[float, list[float], dict[str, float]]:
    """Test accuracy of the full model, of each early exit, and the mean firing rate per layer."""
    model.eval()
    for h in heads:
        h.eval()
    correct = [0] * len(boundaries)
    rates: dict[str, float] = {}
    n = len(data)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(n, start + batch_size))
        frames, labels = data.batch(index, device)
        batch_rates: dict[str, float] = {}
        outs = evaluate_batch(model, heads, boundaries, frames, spikes=batch_rates)
        for name, r in batch_rates.items():
            rates[name] = rates.get(name, 0.0) + r * len(index) / n
        for k, logits in enumerate(outs):
            correct[k] += int((logits.argmax(1) == labels).sum())
    accs = [c / max(n, 1) for c in correct]
    return accs[-1], accs[:-1], rates


@dataclass
class TrainResult:
    """What :func:`train` returns (also in ``model.json`` under ``stdl.results``)."""

    folder: Path
    test_acc: float
    exit_acc: list[float]
    memory: dict[str, int]
    history: list[dict[str, Any]]
    plan: dict[str, Any]


EpochCallback = Callable[[EpochMetrics], None]


def train(config: TrainConfig, out: str | Path, *, resume: bool = False,
          on_epoch: EpochCallback | None = None,
          progress: Callable[[int, int, int], None] | None = None,
          data: tuple[TensorData, TensorData, StreamInfo] | None = None) -> TrainResult:
    """Train ``config`` into the run folder ``out``.

    ``data = (train, test, stream)`` bypasses the data-set loader (tests, custom data).
    ``on_epoch(metrics)`` runs after each epoch's checkpoint (raising there stops the
    run with the checkpoint intact). ``progress(epoch, batch, batches)`` reports batches.
    """
    out = Path(out)
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(config.threads or 1)
    try:
        return _train(config, out, device, resume, on_epoch, progress, data)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, out: Path, device: torch.device, resume: bool, on_epoch: EpochCallback | None,
           progress: Callable[[int, int, int], None] | None,
           data: tuple[TensorData, TensorData, StreamInfo] | None) -> TrainResult:
    check_writable(out)  # before the data and the first epoch: --out may be a file or read-only
    if data is None:
        train_data, stream = load_split(config, "train")
        test_data, _ = load_split(config, "test")
    else:
        train_data, test_data, stream = data
    input_shape = tuple(int(v) for v in train_data.frames.shape[2:])
    num_classes = len(stream.class_names) if stream.class_names else int(train_data.labels.max()) + 1
    batches = math.ceil(len(train_data) / config.batch_size)
    ckpt = resume_from(out, config, resume)
    for folder in (out, RunFolder(out).checkpoint_dir):
        remove_temp_files(folder)  # left by a kill mid-write
    if ckpt is None:
        state = build_state(config, input_shape, num_classes, batches, device)
    else:
        state = ckpt.restore(_finish_state(config, ckpt.model, ckpt.plan, batches, device))
        if state.epoch:
            _write_epoch(out, state, stream, config)  # a kill during them may have left some stale
    while state.epoch < config.epochs:
        epoch = state.epoch
        t0 = time.perf_counter()
        lr = state.optimizer.param_groups[0]["lr"]
        loss, acc, subnet_loss, mem = run_epoch(
            state, train_data, config, device, epoch,
            (lambda b, n: progress(epoch, b, n)) if progress is not None else None)
        test_acc, exit_acc, rates = evaluate(state.model, state.heads, state.plan.boundaries, test_data, device)
        metrics = EpochMetrics(epoch + 1, lr, loss, acc, test_acc, exit_acc, subnet_loss, mem.to_dict(), rates,
                               time.perf_counter() - t0)
        state.epoch += 1
        state.history.append(metrics.to_dict())
        _write_epoch(out, state, stream, config)
        if on_epoch is not None:
            on_epoch(metrics)
    last = state.history[-1] if state.history else {}
    return TrainResult(out, last.get("test_acc", float("nan")), last.get("exit_acc", []), last.get("memory", {}),
                       state.history, state.plan_record)


def _write_epoch(out: Path, state: TrainState, stream: StreamInfo, config: TrainConfig) -> None:
    """The files of the epoch just completed, the checkpoint first.

    Each file is written atomically, and the checkpoint is one commit (:mod:`.checkpoint`), so
    a kill leaves the checkpoint of this epoch or of the previous one. The run artifact,
    metrics and plots derive from it: ``resume`` calls this again and rewrites them all, so a
    kill between two of these writes leaves nothing stale after the resume.
    """
    try:
        save_checkpoint(out, state, config)
        _write_metrics(out, state.history)
        _save(out, state, stream, config)
        _plot(out, state.history)
    except DiskFullError as e:
        if not has_checkpoint(out):
            raise
        raise DiskFullError(e.path, e.errno, fix="free space on that disk and continue with "
                            f"`stdl-edge train --resume --out {out}` (the last checkpoint is intact)") from None


def _save(out: Path, state: TrainState, stream: StreamInfo, config: TrainConfig) -> None:
    last = state.history[-1]
    # save_tensors copies to the host; the modules stay where they train
    save_run(out, state.model, stream, state.plan.boundaries, state.heads, {
        "method": config.method,
        "temporal_decoupling": state.plan.temporal,
        "temporal_credit": {"rule": config.credit, "window": config.credit_window} if state.plan.temporal else None,
        "plan": state.plan_record,
        "train": config.to_dict(),
        "results": {"epochs": state.epoch, "test_acc": last["test_acc"], "exit_acc": last["exit_acc"],
                    "memory": last["memory"]},
    })


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(RunFolder(out).metrics_file) as tmp:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history))


def _plot(out: Path, history: list[dict[str, Any]]) -> None:
    """loss.png, accuracy.png, memory.png from the history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figures = {
        "loss.png": ("training loss (sum over subnetworks)", [("train", [h["train_loss"] for h in history])]),
        "accuracy.png": ("accuracy", [("train (full model)", [h["train_acc"] for h in history]),
                                      ("test (full model)", [h["test_acc"] for h in history])]
                         + [(f"test exit {k}", [h["exit_acc"][k] for h in history])
                            for k in range(len(history[-1]["exit_acc"]))]),
        "memory.png": ("peak training memory (MiB)", [
            ("activations (saved tensors)", [mb(h["memory"]["activation_bytes"]) for h in history]),
            ("total (+ params, grads, Adam)", [mb(h["memory"]["total_bytes"]) for h in history])]),
    }
    for name, (title, series) in figures.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label, values in series:
            ax.plot(epochs, values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
