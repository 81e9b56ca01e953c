"""The optional compiler: numba, when it is installed (the ``fast`` extra) and not turned off.

Compiled kernels in stdl-edge are exact copies of a numpy path that stays the reference (the
EVT3 decoder's ordinary blocks, the event checks and window binning, loihi-sim's CUBA neuron
over a chunk of steps); tests compare the two. ``STDL_EDGE_NO_NUMBA=1`` turns every kernel off,
so the numpy paths run alone.

A process's first compiled call costs about a second (numba's import, its code cache and
LLVM's start), which only long work pays back, so the kernels run on big calls only:
:data:`MIN_EVENTS` events, :data:`MIN_NEURON_STEPS` neuron updates. Small files, the
bundled data sets and the tests' tiny inputs never start numba (tests set these to 0 to
compare the paths on small cases).
"""

from __future__ import annotations

import os
import pickle
import warnings
from functools import lru_cache
from typing import Any, Callable

#: set (to anything non-empty) to run without compiled kernels
NO_NUMBA_ENV = "STDL_EDGE_NO_NUMBA"
#: smallest call, in events, that the event kernels take (numpy checks and bins 4096 events in
#: about 0.1 ms: below that, the kernels' gain is noise)
MIN_EVENTS = 4096
#: smallest call, in neuron updates (neurons x streams x steps), that the neuron kernel takes
#: (about 0.5 ms of numpy: a 34x34 dvs-cnn's window runs compiled, its single steps in numpy)
MIN_NEURON_STEPS = 1 << 16


@lru_cache(maxsize=None)
def numba_module() -> Any:
    """The ``numba`` module, or None (not installed, or :data:`NO_NUMBA_ENV` set)."""
    if os.environ.get(NO_NUMBA_ENV):
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def compile_kernel(func: Callable[..., Any]) -> Callable[..., Any] | None:
    """``func`` compiled by numba (nopython, GIL released, cached on disk), or None without numba.

    Where numba finds no writable cache folder (a read-only install and home: it raises at
    decoration), or its cached code cannot be loaded (an entry written while the same file was
    imported under another module name, or a damaged file), the kernel is compiled without the
    disk cache, with one warning saying so.
    """
    numba = numba_module()
    if numba is None:
        return None
    try:
        return _CacheGuard(func, numba.njit(cache=True, nogil=True)(func))
    except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
        _no_cache_warning(func, err)
        return numba.njit(cache=False, nogil=True)(func)


def _no_cache_warning(func: Callable[..., Any], err: BaseException) -> None:
    warnings.warn(f"stdl-edge: numba cannot use its disk cache for {func.__name__} ({err}); it compiles on "
                  "each run (set NUMBA_CACHE_DIR to a writable folder to keep the compiled code)", stacklevel=3)


class _CacheGuard:
    """A cached kernel that, when loading numba's cached code fails (the error surfaces at the first
    call of a signature), recompiles without the cache and goes on with that."""

    def __init__(self, func: Callable[..., Any], kernel: Callable[..., Any]) -> None:
        self._func, self._kernel, self._guarded = func, kernel, True

    def __call__(self, *args: Any) -> Any:
        if not self._guarded:
            return self._kernel(*args)
        try:
            return self._kernel(*args)
        except (ImportError, EOFError, pickle.UnpicklingError) as err:  # numba's cache load, before running
            _no_cache_warning(self._func, err)
            self._kernel, self._guarded = numba_module().njit(cache=False, nogil=True)(self._func), False
            return self._kernel(*args)
