"""Training on several processes: data parallel, the decoupled pipeline, and both (a 2-D grid).

Launch with ``torchrun`` (or anything that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); without ``WORLD_SIZE > 1`` training is one process and
every method here is the identity. Backend: gloo on CPU, NCCL on CUDA (each process on
``cuda:LOCAL_RANK``). Every collective has the process-group timeout ``dist_timeout_s``: a
rank that dies or hangs makes the others stop with one line (:class:`RankFailure`).

**Layout.** ``WORLD_SIZE = R x G``: ``G = pipeline`` stages (:mod:`.pipeline`) times ``R``
data-parallel replicas; rank ``r * G + g`` is stage ``g`` of replica ``r``.

**Data parallel.** Global batch ``b`` is ``order[b*B:(b+1)*B]`` of the single-process
order (:func:`~stdl_edge.stdl.trainer.epoch_order`, seeded by ``(seed, epoch)``); replica
``r`` trains ``order[b*B + r :: R]``, the shard ``DistributedSampler(shuffle=False)``
gives of that order (without its padding). Temporal decoupling calls ``backward``
``T x K`` times per batch; the gradients accumulate locally, and **once per optimizer step**
(:meth:`Ranks.reduce_gradients`) one bucketed all-reduce per dtype makes, over the replicas
of a stage, ``g = sum_r (n_r / n) g_r`` (``n_r`` samples of ``n`` in the replica's shard):
the gradient of the global batch's mean loss, as one process with ``batch_size = B``
computes it, up to float summation order. Buffers (BatchNorm statistics) follow replica 0,
like DDP's ``broadcast_buffers``; BatchNorm normalises with each replica's own batch.

**Writes.** Rank 0 alone writes the checkpoint, metrics, plots and run artifact (each
atomically), after the others have handed it their stage's weights and Adam moments.
``--resume`` with the same world size continues exactly; another one continues within
float tolerance (the global batches are the same).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from ..data import TensorData
from .checkpoint import TrainState
from .engine import BatchResult
from .memory import MemoryReport, param_bytes
from .pipeline import Stage, make_stage

T = TypeVar("T")


class RankFailure(ValueError):
    """Another rank died, hung past the timeout, or never joined (one line; exit 2)."""


@dataclass(frozen=True)
class Layout:
    """Where this process sits in the ``replicas x stages`` grid."""

    rank: int = 0
    world: int = 1
    stages: int = 1

    @property
    def replicas(self) -> int:
        return self.world // self.stages

    @property
    def replica(self) -> int:
        return self.rank // self.stages

    @property
    def stage(self) -> int:
        return self.rank % self.stages

    def rank_of(self, replica: int, stage: int) -> int:
        return replica * self.stages + stage


def world_from_env() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as torchrun sets them; ``(0, 1, 0)`` without a
    ``WORLD_SIZE`` above 1 (a stray ``RANK`` alone does not make a rank of a larger run)."""
    try:
        rank, world, local = (int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1),
                                                                     ("LOCAL_RANK", 0)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (set by torchrun)") from None
    if world <= 1:
        return 0, 1, 0
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    return rank, world, local


class Ranks:
    """This process's part in a (possibly one-process) run; the trainer's hooks call it.

    With one process every method is the identity (``shard`` keeps the batch, the
    reductions return their input), so the single-process path is the same code.
    """

    def __init__(self, layout: Layout, device: torch.device, timeout_s: float) -> None:
        self.layout = layout
        self.device = device
        self.timeout_s = timeout_s
        self.stage: Stage | None = None  # set by start() when pipelined
        self._replica_group: object | None = None  # the replicas of this stage
        self._pending: list[object] = []  # isend handles of the last output sent
        self._sent: list[torch.Tensor] = []  # kept alive until those complete

    @classmethod
    def local(cls, device: torch.device) -> Ranks:
        """The whole run in this one process."""
        return cls(Layout(), device, 0.0)

    # ------------------------------------------------------------------ setup

    @property
    def distributed(self) -> bool:
        return self.layout.world > 1

    @property
    def writer(self) -> bool:
        """Whether this rank writes the run folder (rank 0)."""
        return self.layout.rank == 0

    def start(self, state: TrainState) -> None:
        """After the state is built or resumed: check every rank starts from the same epoch and
        pick this rank's stage."""
        if not self.distributed:
            return
        epochs = torch.tensor([state.epoch, -state.epoch], dtype=torch.float64, device=self.device)
        self._call("agree on the checkpoint", dist.all_reduce, epochs, op=dist.ReduceOp.MAX)
        epochs = epochs.cpu()
        if int(epochs[0]) != -int(epochs[1]):
            raise RankFailure(f"rank {self.layout.rank}: the ranks start from different epochs "
                              f"({-int(epochs[1])} to {int(epochs[0])}): --out must be one folder that every "
                              "rank sees (a shared filesystem)")
        if self.layout.stages > 1:
            self.stage = make_stage(state.plan, state.plan_record, self.layout.stage, self.layout.stages)

    # ------------------------------------------------------------------ training hooks

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This replica's samples of a global batch ``index`` (``index[r::R]``)."""
        return index[self.layout.replica::self.layout.replicas]

    def stage_inputs(self, heads: list, boundaries: list[tuple[int, int]],
                     frames: torch.Tensor) -> tuple[list, list[tuple[int, int]], torch.Tensor]:
        """The heads, boundaries and input frames this rank's ``train_batch`` runs on: the whole
        plan and the event frames, or its stage's group and the previous stage's outputs."""
        if self.stage is None:
            return heads, boundaries, frames
        if not self.stage.is_first:
            frames = self._recv(self.layout.rank_of(self.layout.replica, self.stage.index - 1))
        return self.stage.heads, self.stage.boundaries, frames

    @property
    def keep_outputs(self) -> bool:
        """Whether ``train_batch`` must keep its outputs (a stage with a successor)."""
        return self.stage is not None and not self.stage.is_last

    def stage_result(self, result: BatchResult, subnets: int) -> BatchResult:
        """Send a stage's outputs on; its per-subnetwork losses placed among all ``subnets``."""
        if self.stage is None:
            return result
        if not self.stage.is_last:
            self._send(result.outputs, self.layout.rank_of(self.layout.replica, self.stage.index + 1))
        losses = [0.0] * subnets
        losses[self.stage.first:self.stage.stop] = result.subnet_loss
        return BatchResult(result.loss, losses, result.logits)

    def reduce_gradients(self, modules: Sequence[torch.nn.Module], local: int, total: int) -> None:
        """Before an optimizer step: ``g = sum_r (n_r / n) g_r`` over this stage's replicas
        (``local = n_r``, ``total = n``), one all-reduce per dtype, and buffers from replica 0."""
        if self.layout.replicas == 1:
            return
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        for g in grads:
            g.mul_(local / total)
        self._bucketed(grads, "all-reduce the gradients",
                       lambda flat: dist.all_reduce(flat, group=self._replica_group))
        buffers = [b for m in modules for b in m.buffers()]
        src = self.layout.rank_of(0, self.layout.stage)
        self._bucketed(buffers, "broadcast the buffers",
                       lambda flat: dist.broadcast(flat, src, group=self._replica_group))

    def reduce_metrics(self, loss: float, subnet: list[float], correct: int,
                       seen: int) -> tuple[float, list[float], int, int]:
        """Epoch sums over the ranks: losses summed over stages and averaged over replicas,
        accuracy counts from the last stage (the model's readout)."""
        if not self.distributed:
            return loss, subnet, correct, seen
        last = self.stage is None or self.stage.is_last
        v = torch.tensor([loss, *subnet, correct if last else 0, seen if last else 0], dtype=torch.float64,
                         device=self.device)
        self._call("sum the epoch's metrics", dist.all_reduce, v)
        v = v.cpu()
        R = self.layout.replicas
        return float(v[0]) / R, [float(s) / R for s in v[1:-2]], int(v[-2]), int(v[-1])

    # ------------------------------------------------------------------ end of an epoch

    def gather_state(self, state: TrainState) -> None:
        """Pipeline: every rank gets every stage's weights and buffers (for its share of the
        evaluation), rank 0 also their Adam moments (for the checkpoint)."""
        if self.stage is None:
            return
        self._flush()
        opt = state.optimizer
        for g in range(self.layout.stages):
            src = self.layout.rank_of(0, g)
            mine = g == self.layout.stage
            modules = make_stage(state.plan, state.plan_record, g, self.layout.stages).modules(state.model)
            tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
            self._bucketed(tensors, "gather the weights", lambda flat: dist.broadcast(flat, src))
            if g == 0:
                continue  # rank 0's own moments are where they belong
            params = [p for m in modules for p in m.parameters()]
            if self.writer or (mine and self.layout.replica == 0):
                moments = [_adam_state(opt, p) for p in params]
                flat = [t for m in moments for t in m]
                if self.writer:
                    self._bucketed(flat, "gather the Adam moments", lambda b: dist.recv(b, src))
                else:
                    self._bucketed(flat, "gather the Adam moments", lambda b: dist.send(b, 0))

    def drop_foreign(self, state: TrainState) -> None:
        """Pipeline: forget the Adam moments of parameters other stages train (rank 0 keeps
        them only from :meth:`gather_state` or a resumed checkpoint to its next write)."""
        if self.stage is None:
            return
        owned = {id(p) for m in self.stage.modules(state.model) for p in m.parameters()}
        for p in [p for p in state.optimizer.state if id(p) not in owned]:
            del state.optimizer.state[p]

    def evaluate(self, evaluate: Callable[..., tuple[float, list[float], dict[str, float]]], model, heads,
                 boundaries, data: TensorData, device: torch.device) -> tuple[float, list[float], dict[str, float]]:
        """``evaluate`` on this rank's ``1/world`` of ``data``, the results combined over the ranks."""
        if not self.distributed or not isinstance(data, TensorData):
            # one process, or a split the loader streams from disk: every rank evaluates it all
            return evaluate(model, heads, boundaries, data, device)
        part = torch.arange(self.layout.rank, len(data), self.layout.world)
        acc, exits, rates = evaluate(model, heads, boundaries, TensorData(data.frames[part], data.labels[part]),
                                     device)
        names = [n for n, layer in zip(model.layer_names(), model.layers) if layer.spiking]
        v = torch.tensor([acc, *exits, *(rates.get(n, 0.0) for n in names)], dtype=torch.float64,
                         device=self.device) * len(part)
        self._call("combine the evaluation", dist.all_reduce, v)
        v = v.cpu() / max(len(data), 1)
        return float(v[0]), [float(e) for e in v[1:1 + len(exits)]], dict(zip(names, map(float, v[1 + len(exits):])))

    def memory(self, report: MemoryReport, state: TrainState) -> tuple[MemoryReport, list[dict[str, int]]]:
        """The largest per-rank footprint (field by field) and each rank's, from rank 0 up ([]
        for one process). A pipeline stage holds every weight, but gradients and Adam moments
        only of its own."""
        if not self.distributed:
            return report, []
        if self.stage is not None:
            own = [p for m in self.stage.modules(state.model) for p in m.parameters()]
            report = MemoryReport(report.activation_bytes, report.param_bytes, param_bytes(own),
                                  report.optimizer_bytes, report.cuda_max_allocated)
        fields = ("activation_bytes", "param_bytes", "grad_bytes", "optimizer_bytes", "cuda_max_allocated")
        mine = torch.tensor([getattr(report, f) for f in fields], dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.layout.world)]
        self._call("gather the memory reports", dist.all_gather, every, mine)
        ranks = [MemoryReport(*map(int, t.cpu())) for t in every]
        peak = MemoryReport(*(max(getattr(r, f) for r in ranks) for f in fields))
        return peak, [r.to_dict() for r in ranks]

    def barrier(self) -> None:
        if self.distributed:
            self._call("wait for rank 0's writes", dist.barrier)

    # ------------------------------------------------------------------ transport

    def _call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args)``, a collective: a lost rank or the timeout becomes one :class:`RankFailure` line."""
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:  # gloo/NCCL: peer closed, timeout (DistBackendError is one)
            reason = _first_sentence(str(e)) or type(e).__name__
            raise RankFailure(
                f"rank {self.layout.rank}: lost another rank while trying to {what} (a rank exited, or none "
                f"answered within {self.timeout_s:g} s: {reason}); see the other ranks' output, then "
                "continue with --resume from the last checkpoint") from None

    def _bucketed(self, tensors: list[torch.Tensor], what: str, op: Callable[[torch.Tensor], object]) -> None:
        """Run ``op`` in place on one flat buffer per dtype of ``tensors`` (on this rank's device,
        where NCCL needs it: Adam's step counters live on the CPU), then copy back."""
        for bucket in _by_dtype(tensors):
            flat = torch.cat([t.detach().reshape(-1).to(self.device) for t in bucket])
            self._call(what, op, flat)
            offset = 0
            with torch.no_grad():
                for t in bucket:
                    t.copy_(flat[offset:offset + t.numel()].view_as(t))
                    offset += t.numel()

    def _send(self, tensor: torch.Tensor, dst: int) -> None:
        """Send ``(T, B, ...)`` activations to ``dst`` without waiting (the previous send first)."""
        self._flush()
        tensor = tensor.contiguous()
        if tensor.dim() > 6:
            raise ValueError(f"cannot send activations of {tensor.dim()} dimensions (at most 6)")
        header = torch.zeros(8, dtype=torch.int64)
        header[0] = _DTYPES.index(tensor.dtype)
        header[1] = tensor.dim()
        header[2:2 + tensor.dim()] = torch.tensor(tensor.shape)
        self._sent = [header.to(tensor.device), tensor]
        self._pending = [self._call("send activations", dist.isend, t, dst) for t in self._sent]

    def _recv(self, src: int) -> torch.Tensor:
        header = torch.zeros(8, dtype=torch.int64, device=self.device)
        self._call("receive activations", dist.recv, header, src)
        header = header.cpu()
        shape = [int(v) for v in header[2:2 + int(header[1])]]
        tensor = torch.empty(shape, dtype=_DTYPES[int(header[0])], device=self.device)
        self._call("receive activations", dist.recv, tensor, src)
        return tensor

    def _flush(self) -> None:
        for work in self._pending:
            self._call("send activations", work.wait)
        self._pending, self._sent = [], []


def _first_sentence(message: str) -> str:
    """A backend's error as a short reason: its first sentence, without the source location
    (``[.../gloo/transport/tcp/pair.cc:537] Read error ...: Connection reset by peer. This ...``)."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|py):\d+\]\s*", "", line)
    return re.split(r"(?<=[^.\d])\.\s", line, maxsplit=1)[0][:200]


_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.uint8]


def _by_dtype(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    buckets: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault(t.dtype, []).append(t)
    yield from buckets.values()


def _adam_state(optimizer: torch.optim.Optimizer, p: torch.nn.Parameter) -> list[torch.Tensor]:
    """``[step, exp_avg, exp_avg_sq]`` of ``p`` in ``optimizer`` (Adam), made (zeros) where absent."""
    state = optimizer.state[p]
    if not state:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return [state["step"], state["exp_avg"], state["exp_avg_sq"]]


def setup(device: torch.device, pipeline: int = 1, timeout_s: float = 300.0) -> Ranks:
    """This process's :class:`Ranks`: joins the process group when launched with ``WORLD_SIZE > 1``.

    ``device``: the configured one; under CUDA each process takes ``cuda:LOCAL_RANK``.
    Raises ``ValueError`` (one line) for a world that cannot hold ``pipeline`` stages, and
    :class:`RankFailure` when the other ranks do not all join within ``timeout_s``.
    """
    rank, world, local = world_from_env()
    if world % pipeline:
        how = ("launch with torchrun --nproc-per-node " + str(pipeline)) if world == 1 else \
            f"the {world} processes cannot form replicas of {pipeline} stages"
        raise ValueError(f"--pipeline {pipeline} needs a multiple of {pipeline} processes; {how}")
    layout = Layout(rank, world, pipeline)
    if world == 1:
        return Ranks(layout, device, timeout_s)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    ranks = Ranks(layout, device, timeout_s)
    backend = "nccl" if device.type == "cuda" else "gloo"
    ranks._call("join the process group", dist.init_process_group, backend,
                timeout=timedelta(seconds=timeout_s), rank=rank, world_size=world)
    # every rank creates every stage's replica group, in the same order
    for stage in range(pipeline):
        members = [layout.rank_of(r, stage) for r in range(layout.replicas)]
        group = ranks._call("make the replica groups", dist.new_group, members,
                            timeout=timedelta(seconds=timeout_s))
        if stage == layout.stage:
            ranks._replica_group = group
    return ranks


def teardown(ranks: Ranks) -> None:
    """Leave the process group (after a failure too: the other ranks are told by their timeouts)."""
    if ranks.distributed and dist.is_initialized():
        ranks._pending, ranks._sent = [], []
        dist.destroy_process_group()
