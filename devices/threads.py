"""Compute threads of the devices: the ``--threads`` option, torch's intra-op threads around a
step, and numpy BLAS's process-wide limit while a device lives.

A batch-1 stream steps small tensors, where more threads only oversubscribe the cores (on a
busy 2-core machine the p90 step latency was 100x the p50 with torch's default threads), so
every device defaults to one.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator


def thread_options(device: str, threads: int) -> dict[str, int]:
    """The load options that give ``device`` ``threads`` compute threads (``--threads``): torch's
    and loihi-sim's ``threads``, onnxruntime's ``intra_op_threads``; none for lava (its own
    processes)."""
    if int(threads) != threads or threads < 1:
        raise ValueError(f"--threads {threads} must be a whole number >= 1")
    return {"torch": {"threads": int(threads)}, "loihi-sim": {"threads": int(threads)},
            "onnxruntime": {"intra_op_threads": int(threads)}}.get(device, {})


def check_threads(threads: int | None) -> int | None:
    """A device's ``threads=`` option: a whole number >= 1, or None (the process's setting)."""
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"threads={threads} must be a whole number >= 1 (or None: the process's setting)")
    return None if threads is None else int(threads)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block and restored after it (None: left
    as they are). Cheap enough per step (two calls of well under a microsecond)."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _BlasLimits:
    """numpy BLAS's thread limit is one per process: while devices that asked for one live, the
    smallest holds; when the last of them is collected, BLAS gets its original limits back."""

    def __init__(self) -> None:
        self._live: dict[int, int] = {}  # holder key -> its limit
        self._first: Any = None  # the limiter that knows BLAS's original limits
        self._keys = 0

    def hold(self, owner: object, n: int) -> None:
        from threadpoolctl import ThreadpoolController

        self._keys += 1
        key = self._keys
        self._live[key] = n
        if self._first is None:
            self._first = ThreadpoolController().limit(limits=n, user_api="blas")
        else:
            ThreadpoolController().limit(limits=min(self._live.values()), user_api="blas")
        weakref.finalize(owner, self._release, key)

    def _release(self, key: int) -> None:
        from threadpoolctl import ThreadpoolController

        self._live.pop(key, None)
        if not self._live:
            self._first.restore_original_limits()
            self._first = None
        else:
            ThreadpoolController().limit(limits=min(self._live.values()), user_api="blas")


_BLAS_LIMITS = _BlasLimits()


def limit_blas_threads(owner: object, n: int | None) -> None:
    """Limit numpy's BLAS to ``n`` threads while ``owner`` (a device) lives (the smallest limit of
    the live devices holds; the original limits come back when the last is collected). Per step
    the limit would cost 40-80 us (``threadpoolctl``), a tenth of a loihi-sim step, so it is set
    once at load; None leaves BLAS as it is."""
    if n is not None:
        _BLAS_LIMITS.hold(owner, n)
