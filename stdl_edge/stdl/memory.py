"""Exact training-memory accounting.

Two measures (DESIGN.md section 7):

* **saved-tensor bytes** (exact, CPU and GPU): every tensor autograd saves for the
  backward pass goes through :func:`torch.autograd.graph.saved_tensors_hooks`.
  :class:`SavedTensorMeter` counts *unique storages* (a tensor saved by two nodes, or
  two views of one buffer, count once; a contiguous view of part of a larger buffer, such
  as one step of the (T, B, ...) input, counts the bytes it spans) and follows them until autograd frees them
  (after ``backward``), so it reports the live total and its **peak** over a training
  step. Parameters saved by a node (a weight kept for the input gradient) are not
  activations and are excluded: they are counted once under ``param_bytes``.
* ``torch.cuda.max_memory_allocated`` on a GPU (everything: activations, parameters,
  workspace, allocator rounding).

The persistent part of training memory is ``param_bytes + grad_bytes + optimizer_bytes``
(Adam keeps two moments per parameter: ``2 * param_bytes`` plus a step counter).

Units: bytes everywhere; :func:`mb` converts to MiB (2**20 bytes) for tables.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch

MIB = 2 ** 20


def mb(nbytes: float) -> float:
    """Bytes -> MiB."""
    return float(nbytes) / MIB


class _Saved:
    """What the pack hook returns: holds the tensor until autograd drops it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    s = t.untyped_storage()
    return (str(t.device), s.data_ptr())


def _saved_key(t: torch.Tensor) -> tuple[tuple[Any, ...], int]:
    """Key and bytes of a saved tensor: its storage, or for a contiguous view of part of a
    larger storage (one step's slice of the ``(T, B, ...)`` input) the bytes it spans."""
    s = t.untyped_storage()
    span = t.numel() * t.element_size()
    if t.is_contiguous() and span < s.nbytes():
        return (str(t.device), s.data_ptr(), t.data_ptr(), span), span
    return _storage_key(t), s.nbytes()


class SavedTensorMeter:
    """Context manager that measures the bytes of tensors saved for backward.

    ``current`` is the live total (unique storages still referenced by a graph),
    ``peak`` its maximum since entering (or since :meth:`reset_peak`). Storages of the
    ``exclude`` tensors (model parameters) are never counted.

    >>> lin = torch.nn.Linear(5, 3, bias=False)
    >>> x = torch.ones(4, 5)
    >>> with SavedTensorMeter(exclude=lin.parameters()) as m:
    ...     y = torch.relu(lin(x)).sum()   # saves x (4*5*4 B) and relu's output (4*3*4 B)
    ...     y.backward()
    >>> m.peak, m.current
    (128, 0)
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {_storage_key(p) for p in exclude}
        self._live: dict[tuple[Any, ...], list[int]] = {}  # key -> [nbytes, refcount]
        self.current = 0
        self.peak = 0
        self.packed = 0  # number of saved tensors seen (for diagnostics)
        self._ctx: Any = None

    def _release(self, key: tuple[Any, ...]) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    def _pack(self, t: torch.Tensor) -> Any:
        self.packed += 1
        if _storage_key(t) in self._excluded or t.untyped_storage().nbytes() == 0:
            return t
        key, nbytes = _saved_key(t)
        holder = _Saved(t)
        entry = self._live.get(key)
        if entry is None:
            self._live[key] = [nbytes, 1]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        else:
            entry[1] += 1
        weakref.finalize(holder, self._release, key)
        return holder

    @staticmethod
    def _unpack(obj: Any) -> torch.Tensor:
        return obj.tensor if isinstance(obj, _Saved) else obj

    def reset_peak(self) -> None:
        self.peak = self.current

    def __enter__(self) -> SavedTensorMeter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
        self._ctx = None


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of unique storages among ``tensors``."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


def state_bytes(states: Any) -> int:
    """Bytes of the tensors of a nested state (tuples and lists of tensors; each tensor once):
    the neuron states (and traces) carried from one time step to the next."""
    seen: dict[int, int] = {}

    def walk(s: Any) -> None:
        if isinstance(s, torch.Tensor):
            seen[id(s)] = s.numel() * s.element_size()
        elif isinstance(s, (tuple, list)):
            for v in s:
                walk(v)

    walk(states)
    return sum(seen.values())


def param_bytes(params: Iterable[torch.Tensor]) -> int:
    return tensor_bytes(p for p in params)


def grad_bytes(params: Iterable[torch.Tensor]) -> int:
    return tensor_bytes(p.grad for p in params if p.grad is not None)


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer state (Adam: ``exp_avg``, ``exp_avg_sq``, ``step``)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values()
                        if isinstance(v, torch.Tensor))


@dataclass
class MemoryReport:
    """Peak training memory of one step / epoch, in bytes.

    activation_bytes: peak saved-tensor bytes (exact, unique storages).
    state_bytes: state carried from step to step (neuron states, eligibility traces), largest
        over the batches (:attr:`~stdl_edge.stdl.engine.BatchResult.state_bytes`).
    param_bytes, grad_bytes, optimizer_bytes: persistent training state (model + aux heads).
    cuda_max_allocated: ``torch.cuda.max_memory_allocated`` (0 off GPU).
    """

    activation_bytes: int = 0
    state_bytes: int = 0
    param_bytes: int = 0
    grad_bytes: int = 0
    optimizer_bytes: int = 0
    cuda_max_allocated: int = 0

    @property
    def total_bytes(self) -> int:
        """Activations + carried state + parameters + gradients + optimizer state."""
        return self.activation_bytes + self.state_bytes + self.param_bytes + self.grad_bytes + self.optimizer_bytes

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        return d


def training_state_bytes(n_param_bytes: int) -> int:
    """Persistent bytes of a set of float parameters trained with Adam: weights, grads, two moments."""
    return 4 * n_param_bytes
