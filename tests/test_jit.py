"""numba starts only for work that pays its start-up (about a second per process)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import numpy as np
from stdl_edge.binning import BinSpec, bin_windows
from stdl_edge.events import make_events, validate_events
from stdl_edge.devices.loihi_sim_neurons import cuba_fixed_chunk
rng = np.random.default_rng(0)
n = int(sys.argv[1])
ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n))
validate_events(ev, (34, 34, 2))
list(bin_windows([ev], (34, 34, 2), BinSpec(1000), 16))
m = int(sys.argv[2])
cuba_fixed_chunk(np.ones((1, m)), np.ones((3, 1, m)), np.zeros((1, m)), np.zeros((1, m)), 4096, 2048, 0, 10,
                 (True, True), np.zeros(4, bool), False)
print("numba" in sys.modules)
"""


def _numba_started(events: int, neurons: int) -> bool:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(events), str(neurons)], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() == "True"


def test_small_work_never_starts_numba():
    assert not _numba_started(2000, 1000)


def test_big_work_runs_compiled_when_numba_is_there():
    from stdl_edge.jit import numba_module

    assert _numba_started(50_000, 40_000) == (numba_module() is not None)


def test_a_read_only_install_compiles_without_the_disk_cache(monkeypatch):
    """numba raises at decoration when no cache folder is writable: the kernel then compiles
    without the cache, with one warning that says how to keep the compiled code."""
    import pytest

    from stdl_edge import jit

    numba = jit.numba_module()
    if numba is None:
        pytest.skip("numba not installed (the fast extra)")
    real = numba.njit

    def njit(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file '/ro/f.py'")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)

    def add_one(x):
        return x + 1

    with pytest.warns(UserWarning, match="numba cannot use its disk cache for add_one .*NUMBA_CACHE_DIR"):
        kernel = jit.compile_kernel(add_one)
    assert kernel(41) == 42


def test_a_cache_entry_that_cannot_be_loaded_is_recompiled(monkeypatch):
    """A cached entry numba cannot load (written under another module name: ModuleNotFoundError at
    the first call) gives one warning and a kernel compiled afresh, not a traceback."""
    import pytest

    from stdl_edge import jit

    numba = jit.numba_module()
    if numba is None:
        pytest.skip("numba not installed (the fast extra)")

    def add_two(x):
        return x + 2

    kernel = jit.compile_kernel(add_two)

    def broken(*args):
        raise ModuleNotFoundError("No module named 'loihi_sim_neurons'")

    monkeypatch.setattr(kernel, "_kernel", broken)
    with pytest.warns(UserWarning, match="numba cannot use its disk cache for add_two"):
        assert kernel(40) == 42
    assert kernel(1) == 3
