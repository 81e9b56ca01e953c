"""The one trainer behind ``stdl``, ``bptt``, ``sltt`` and ``local``.

=========  =========================  ===============  ==================================
method     subnetworks                time steps       heads of subnetworks k < K
=========  =========================  ===============  ==================================
``stdl``   K (balanced or --splits)   decoupled        AugLocal aux nets within the budget
``local``  K                          decoupled        global pool + linear readout only
``sltt``   1                          decoupled        (none)
``bptt``   1                          full graph       (none)
=========  =========================  ===============  ==================================

Long file: the one epoch loop and everything it writes per epoch (checkpoint, metrics, run
artifact, best epoch, plots, TensorBoard); splitting it would spread the resume guarantee
(see :func:`_write_epoch`) over modules.

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

Conveniences (options of :class:`.config.TrainConfig`): ``val_fraction`` holds out a
stratified, seeded validation set from the training set; the *monitored* accuracy is its
accuracy, else the test accuracy. ``save_best`` keeps the run artifact of the epoch with the
best monitored accuracy in ``best/`` (a run folder of its own: export, verify and run take it);
``patience`` stops the run when it has not improved for that many epochs; ``tensorboard`` logs
each epoch's metrics to ``tensorboard/``. Best epoch and stop are derived from the history, so
a resumed run makes the same choices.

Before the first epoch, ``out`` must be a writable folder; a loss or weight that stops being
finite ends the run with :class:`TrainingDiverged`; a full disk with
:class:`~stdl_edge.io.DiskFullError` naming the file (the last checkpoint stays intact).
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..artifact import RunFolder, StreamInfo, save_run
from ..data import TensorData, load_dataset, materialize, stratified_split
from ..datasets.augment import Augmenter
from ..datasets.loader import FrameData, choose_loader
from ..io import DiskFullError, atomic_path, check_writable, remove_temp_files
from ..models import SpikingNet, build_model
from .auxiliary import Plan, make_plan
from .checkpoint import TrainState, has_checkpoint, resume_from, save_checkpoint
from .config import TrainConfig
from .distributed import Ranks, setup as setup_ranks, teardown as teardown_ranks
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


def load_split(config: TrainConfig, split: str) -> tuple[TensorData | FrameData, StreamInfo]:
    """The ``split`` of ``config.dataset`` as the trainer batches it, with its :class:`StreamInfo`:
    in memory (:class:`TensorData`) or through a DataLoader (:class:`FrameData`), as ``config.loader``
    says (:func:`stdl_edge.datasets.loader.choose_loader`); augmentation on the train split only."""
    ds = load_dataset(config.dataset, split, num_steps=config.steps, dt_us=config.dt_us, seed=0,
                      limit=config.limit, **config.data_options())
    mode = choose_loader(config.loader, generated=ds.cache_path is not None, augment=bool(config.augment))
    if mode == "memory":
        return materialize(ds), ds.stream
    augment = Augmenter(config.augment, ds.stream.sensor_size, config.seed) if config.augment and split == "train" else None
    return FrameData(ds.samples, ds.stream, mode=mode, workers=config.workers, augment=augment), ds.stream


def validation_split(data: TensorData | FrameData, fraction: float, seed: int) -> tuple[TensorData, TensorData]:
    """``(train, validation)`` of ``data``: in each class ``round(fraction * n)`` samples drawn
    with ``seed`` go to the validation set (:func:`stdl_edge.data.stratified_split`)."""
    if not isinstance(data, TensorData):
        raise ValueError(f"--val-fraction holds out samples of a split in memory; this data set is loaded "
                         f"by the {getattr(data, 'mode', 'streaming')} loader: add --loader memory, or drop "
                         "--val-fraction (the test set then picks the best epoch)")
    is_val = torch.from_numpy(stratified_split(data.labels.numpy(), seed, fraction))
    if not bool(is_val.any()) or bool(is_val.all()):
        raise ValueError(f"--val-fraction {fraction:g} of {len(data)} training samples leaves "
                         f"{int(is_val.sum())} for validation; give a larger fraction (or more data)")
    return (TensorData(data.frames[~is_val], data.labels[~is_val]),
            TensorData(data.frames[is_val], data.labels[is_val]))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Data order of ``epoch``: a permutation depending only on ``(seed, epoch)``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


# ----------------------------------------------------------------------------------- state


def build_state(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int,
                batches_per_epoch: int, device: torch.device, dt_us: int | None = None) -> TrainState:
    """Fresh model (seeded), plan with heads, Adam and the cosine schedule. ``dt_us``: the
    data's time step (default ``config.dt_us``), for time constants given in microseconds."""
    model_cfg = config.model_config(input_shape, num_classes, dt_us if dt_us is not None else config.dt_us)
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
    rank_memory: list[dict[str, int]] = field(default_factory=list)  # each rank's (distributed: memory = their max)
    val_acc: float | None = None  # validation accuracy (with --val-fraction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_epoch(state: TrainState, data: TensorData | FrameData, config: TrainConfig, device: torch.device,
              epoch: int, progress: Callable[[int, int], None] | None = None,
              ranks: Ranks | None = None) -> tuple[float, float, list[float], MemoryReport]:
    """One pass over ``data`` in the order of :func:`epoch_order`; returns loss, accuracy, per-subnet loss, memory.

    ``ranks``: this process's share of a distributed run (:mod:`.distributed`; None = all of it)."""
    ranks = ranks if ranks is not None else Ranks.local(device)
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
    modules = [model, *heads]

    def online_step(t: int) -> None:
        ranks.reduce_gradients(modules, len(labels), len(index))
        opt.step()
        opt.zero_grad(set_to_none=True)

    batches = data.batches(config.batch_size, order, device, epoch=epoch, shard=ranks.shard)
    for b, (frames, labels) in enumerate(batches):
        index = order[b * config.batch_size:(b + 1) * config.batch_size]  # the global batch
        opt.zero_grad(set_to_none=True)
        with SavedTensorMeter(exclude=params) as meter:
            group_heads, bounds, frames = ranks.stage_inputs(heads, state.plan.boundaries, frames)
            result = train_batch(model, group_heads, bounds, frames, labels, temporal=temporal,
                                 credit=config.credit, window=config.credit_window,
                                 mse_weight=config.mse_weight, autocast=autocast,
                                 on_step=online_step if config.online else None, keep_outputs=ranks.keep_outputs)
            result = ranks.stage_result(result, len(state.plan.boundaries))
        peak_act = max(peak_act, meter.peak)
        peak_state = max(peak_state, result.state_bytes)
        if not config.online:
            ranks.reduce_gradients(modules, len(labels), len(index))
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
    loss_sum, subnet_sum, correct, seen = ranks.reduce_metrics(loss_sum, subnet_sum, correct, seen)
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


def evaluate(model: SpikingNet, heads: list[SpikingNet], boundaries: list[tuple[int, int]], data: TensorData | FrameData,
             device: torch.device, batch_size: int = 128) -> tuple[float, list[float], dict[str, float]]:
    """Test accuracy of the full model, of each early exit, and the mean firing rate per layer."""
    model.eval()
    for h in heads:
        h.eval()
    correct = [0] * len(boundaries)
    rates: dict[str, float] = {}
    n = len(data)
    for frames, labels in data.batches(batch_size, device=device):
        batch_rates: dict[str, float] = {}
        outs = evaluate_batch(model, heads, boundaries, frames, spikes=batch_rates)
        for name, r in batch_rates.items():
            rates[name] = rates.get(name, 0.0) + r * len(labels) / n
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
    Launched by torchrun, each rank trains its share (:mod:`.distributed`); both callbacks
    run on every rank, and rank 0 alone writes ``out``.
    """
    out = Path(out)
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(config.threads or 1)
    ranks = setup_ranks(device, config.pipeline, config.dist_timeout_s)
    board = TensorBoardLog(out / TENSORBOARD_DIR) if config.tensorboard and ranks.writer else None
    try:
        return _train(config, out, ranks.device, resume, on_epoch, progress, data, ranks, board)
    finally:
        teardown_ranks(ranks)
        torch.set_num_threads(threads)
        if board is not None:
            board.close()


def _train(config: TrainConfig, out: Path, device: torch.device, resume: bool, on_epoch: EpochCallback | None,
           progress: Callable[[int, int, int], None] | None,
           data: tuple[TensorData, TensorData, StreamInfo] | None, ranks: Ranks,
           board: TensorBoardLog | None = None) -> TrainResult:
    check_writable(out)  # before the data and the first epoch: --out may be a file or read-only
    _check_tensorboard(config)
    if data is None:
        train_data, stream = load_split(config, "train")
        test_data, _ = load_split(config, "test")
    else:
        train_data, test_data, stream = data
    val_data = None
    if config.val_fraction is not None:
        train_data, val_data = validation_split(train_data, config.val_fraction, config.seed)
    input_shape = tuple(int(v) for v in train_data.frame_shape)
    num_classes = len(stream.class_names) if stream.class_names else int(train_data.labels.max()) + 1
    batches = math.ceil(len(train_data) / config.batch_size)
    ckpt = resume_from(out, config, resume)
    for folder in (out, RunFolder(out).checkpoint_dir, out / BEST_DIR) if ranks.writer else ():
        remove_temp_files(folder)  # left by a kill mid-write
    if ckpt is None:
        state = build_state(config, input_shape, num_classes, batches, device, dt_us=stream.dt_us)
    else:
        state = ckpt.restore(_finish_state(config, ckpt.model, ckpt.plan, batches, device))
    ranks.start(state)  # after every rank has read the checkpoint
    if ckpt is not None and state.epoch and ranks.writer:
        _write_epoch(out, state, stream, config)  # a kill during them may have left some stale
    ranks.drop_foreign(state)
    while state.epoch < config.epochs and not stopped_early(state.history, config.patience):
        epoch = state.epoch
        t0 = time.perf_counter()
        lr = state.optimizer.param_groups[0]["lr"]
        loss, acc, subnet_loss, mem = run_epoch(
            state, train_data, config, device, epoch,
            (lambda b, n: progress(epoch, b, n)) if progress is not None else None, ranks)
        mem, rank_mem = ranks.memory(mem, state)
        ranks.gather_state(state)
        test_acc, exit_acc, rates = ranks.evaluate(evaluate, state.model, state.heads, state.plan.boundaries,
                                                   test_data, device)
        val_acc = None if val_data is None else ranks.evaluate(evaluate, state.model, [], [(0, len(state.model.layers))],
                                                               val_data, device)[0]
        metrics = EpochMetrics(epoch + 1, lr, loss, acc, test_acc, exit_acc, subnet_loss, mem.to_dict(), rates,
                               time.perf_counter() - t0, rank_memory=rank_mem, val_acc=val_acc)
        state.epoch += 1
        state.history.append(metrics.to_dict())
        if ranks.writer:
            _write_epoch(out, state, stream, config)
            ranks.drop_foreign(state)
        ranks.barrier()
        if board is not None:
            board.log(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    last = state.history[-1] if state.history else {}
    return TrainResult(out, last.get("test_acc", float("nan")), last.get("exit_acc", []), last.get("memory", {}),
                       state.history, state.plan_record)


#: the run folder of the best epoch inside the run folder (``save_best``)
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"


def monitored_acc(metrics: dict[str, Any]) -> float:
    """The accuracy that picks the best epoch and stops early: validation where there is one, else test."""
    return metrics["val_acc"] if metrics.get("val_acc") is not None else metrics["test_acc"]


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch (1-based) with the highest :func:`monitored_acc` (the first of equals); 0 for none."""
    best, best_acc = 0, -math.inf
    for h in history:
        if monitored_acc(h) > best_acc:
            best, best_acc = h["epoch"], monitored_acc(h)
    return best


def stopped_early(history: list[dict[str, Any]], patience: int | None) -> bool:
    """Whether the monitored accuracy has not improved for ``patience`` epochs (never for None)."""
    return patience is not None and bool(history) and history[-1]["epoch"] - best_epoch(history) >= patience


def _check_tensorboard(config: TrainConfig) -> None:
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("--tensorboard needs the tensorboard package: pip install 'stdl-edge[tensorboard]' "
                         "(or train without --tensorboard)")


class TensorBoardLog:
    """The epochs of one training call as TensorBoard scalars in ``folder``: losses (total and per
    subnetwork), accuracies, firing rates, lr, memory. The event file opens at the first epoch
    logged with that epoch as its ``purge_step``, which drops what an earlier, killed attempt
    logged from there on: after a resume TensorBoard shows each epoch once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writer: Any = None

    def log(self, m: EpochMetrics) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder), purge_step=m.epoch)
        scalars = {"loss/train": m.train_loss, "accuracy/train": m.train_acc, "accuracy/test": m.test_acc,
                   "lr": m.lr, "memory/total_MiB": mb(m.memory["total_bytes"]),
                   "memory/activations_MiB": mb(m.memory["activation_bytes"]), "time/epoch_s": m.epoch_time_s}
        scalars.update({f"loss/subnet{k}": v for k, v in enumerate(m.subnet_loss)})
        scalars.update({f"accuracy/exit{k}": v for k, v in enumerate(m.exit_acc)})
        scalars.update({f"firing_rate/{name}": v for name, v in m.firing_rate.items()})
        if m.val_acc is not None:
            scalars["accuracy/val"] = m.val_acc
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, m.epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
        if config.save_best and best_epoch(state.history) == state.epoch:
            _save(out / BEST_DIR, state, stream, config)
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
                    "memory": last["memory"], "val_acc": last.get("val_acc"),
                    "best_epoch": best_epoch(state.history)},
    })


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(RunFolder(out).metrics_file) as tmp:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history))


def _plot(out: Path, history: list[dict[str, Any]]) -> None:
    """loss.png (total and per subnetwork), accuracy.png, memory.png, firing_rate.png (per layer)
    from the history; every axis labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    last = history[-1]
    accuracy = [("train (full model)", [h["train_acc"] for h in history]),
                ("test (full model)", [h["test_acc"] for h in history])]
    if last.get("val_acc") is not None:
        accuracy.append(("validation (full model)", [h["val_acc"] for h in history]))
    figures = {
        "loss.png": ("training loss", "loss per batch (mean over the epoch)",
                     [("total (sum over subnetworks)", [h["train_loss"] for h in history])]
                     + [(f"subnetwork {k}", [h["subnet_loss"][k] for h in history])
                        for k in range(len(last["subnet_loss"]))]),
        "accuracy.png": ("accuracy", "accuracy (fraction correct)", accuracy
                         + [(f"test exit {k}", [h["exit_acc"][k] for h in history])
                            for k in range(len(last["exit_acc"]))]),
        "memory.png": ("peak training memory", "MiB", [
            ("activations (saved tensors)", [mb(h["memory"]["activation_bytes"]) for h in history]),
            ("total (+ params, grads, Adam)", [mb(h["memory"]["total_bytes"]) for h in history])]),
        "firing_rate.png": ("firing rate on the test set", "spikes per neuron per step",
                            [(name, [h["firing_rate"].get(name, math.nan) for h in history])
                             for name in last["firing_rate"]]),
    }
    for name, (title, ylabel, series) in figures.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label, values in series:
            ax.plot(epochs, values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
