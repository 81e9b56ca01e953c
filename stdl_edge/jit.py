"""The optional compiler: numba, when it is installed (the ``fast`` extra) and not turned off.

Compiled kernels in stdl-edge are exact copies of a numpy path that stays the reference (the
EVT3 decoder's ordinary blocks, loihi-sim's CUBA neuron over a chunk of steps); tests compare
the two. ``STDL_EDGE_NO_NUMBA=1`` turns every kernel off, so the numpy paths run alone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

#: set (to anything non-empty) to run without compiled kernels
NO_NUMBA_ENV = "STDL_EDGE_NO_NUMBA"


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
