"""loihi-sim's CUBA neuron over a chunk of steps: the compiled kernel (numba) against the numpy
step it copies, bit for bit, on random chunks that wrap the current, saturate the voltage, reset
mid-chunk and use every decay extreme."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.devices.loihi_sim_neurons import _cuba_chunk_kernel, cuba_fixed_chunk, cuba_fixed_step
from stdl_edge.loihi import MAX_UV

needs_numba = pytest.mark.skipif(_cuba_chunk_kernel() is None, reason="numba not installed (the fast extra)")


def _case(rng: np.random.Generator, big: bool):
    steps, batch, shape = int(rng.integers(1, 9)), int(rng.integers(1, 4)), (int(rng.integers(1, 4)), 5)
    scale = (1 << 17) if big else 40  # big: a << 6 reaches the 24-bit wrap and the saturation
    dtype = rng.choice([np.float32, np.float64]) if not big else np.float64
    a = rng.integers(-scale, scale + 1, (steps, batch, *shape)).astype(dtype)
    u = rng.integers(-MAX_UV + 1, MAX_UV, (batch, *shape)).astype(np.float64) if big else np.zeros((batch, *shape))
    v = rng.integers(-MAX_UV + 1, MAX_UV, (batch, *shape)).astype(np.float64) if big else np.zeros((batch, *shape))
    i_decay, v_decay = (int(rng.choice([0, 1, 1024, 4095, 4096])) for _ in range(2))
    bias = rng.integers(-300, 300, shape) if rng.random() < 0.5 else 0
    vth = int(rng.integers(0, 1 << 17 if big else 64))
    resets = rng.random(steps) < 0.2
    checks = (bool(rng.random() < 0.8), bool(rng.random() < 0.8)) if big else (True, True)
    return a[0], a[1:], u, v, i_decay, v_decay, bias, vth, checks, resets


@needs_numba
@pytest.mark.parametrize("big", [False, True])
def test_compiled_chunk_equals_the_numpy_steps(big):
    rng = np.random.default_rng(7 + big)
    for _ in range(300):
        args = _case(rng, big)
        u0, v0 = args[2].copy(), args[3].copy()
        fast = cuba_fixed_chunk(*args, keep_states=True, compiled=True)
        slow = cuba_fixed_chunk(*args, keep_states=True, compiled=False)
        for got, want in zip(fast, slow):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(args[2], u0)  # the caller's state is not mutated
        np.testing.assert_array_equal(args[3], v0)
        assert fast[0].dtype == bool and fast[1].dtype == np.float64
        np.testing.assert_array_equal(fast[5], fast[0].reshape(-1, fast[5].size).sum(axis=0))


def test_numpy_chunk_is_the_step_repeated_with_resets():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 30, (4, 2, 6)).astype(np.float64)
    resets = np.array([False, False, True, False])
    s, u, v, us, vs, counts = cuba_fixed_chunk(a[0], a[1:], np.zeros((2, 6)), np.zeros((2, 6)), 1024, 2048, 0, 20,
                                       (True, True), resets, keep_states=True, compiled=False)
    uu, vv = np.zeros((2, 6)), np.zeros((2, 6))
    for t in range(4):
        if resets[t]:
            uu, vv = np.zeros_like(uu), np.zeros_like(vv)
        st, uu, vv = cuba_fixed_step(a[t], uu, vv, 1024, 2048, 0, 20)
        np.testing.assert_array_equal(s[t], st)
        np.testing.assert_array_equal(us[t], uu)
        np.testing.assert_array_equal(vs[t], vv)
    np.testing.assert_array_equal(u, uu)
    np.testing.assert_array_equal(v, vv)
    np.testing.assert_array_equal(counts, s.sum(axis=(0, 1)))
    assert s.any() and not s.all()  # the case exercises both outcomes
