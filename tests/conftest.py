"""Shared fixtures. Tests are hermetic: tmp_path only, seeded generators, no network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdl_edge.events import make_events


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def random_events(rng):
    """Factory: ``random_events(n, width=34, height=34, duration_us=100_000)`` sorted events."""

    def make(n: int, width: int = 34, height: int = 34, duration_us: int = 100_000) -> np.ndarray:
        t = np.sort(rng.integers(0, duration_us, n))
        return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Data-set caches go to a per-session temp folder, never the user's home."""
    monkeypatch.setenv("STDL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Small step-sized ops: one torch thread is much faster on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _compiled_kernels_on_small_inputs(monkeypatch):
    """Tests' inputs are tiny, below the sizes where the numba kernels start (stdl_edge.jit): run
    the kernels on them anyway, so every device and Lava agreement test checks the compiled
    code; the numpy reference paths are compared with them in their own tests."""
    from stdl_edge import jit

    monkeypatch.setattr(jit, "MIN_EVENTS", 0)
    monkeypatch.setattr(jit, "MIN_NEURON_STEPS", 0)
