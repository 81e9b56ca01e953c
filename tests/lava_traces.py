"""Shared check of the Lava agreement tests: two simulators' integer traces are identical."""

from __future__ import annotations

import numpy as np


def assert_same_traces(ours: dict[str, np.ndarray], lava: dict[str, np.ndarray]) -> None:
    """Same keys, shapes and values at every step; the message names the first difference."""
    assert set(ours) == set(lava), sorted(set(ours) ^ set(lava))
    for key in sorted(ours):
        a, b = ours[key].astype(np.int64), lava[key].astype(np.int64)
        assert a.shape == b.shape, key
        bad = np.argwhere(a != b)
        assert bad.size == 0, f"{key}: first difference at (step, batch, ...) {tuple(bad[0])}: " \
                              f"loihi-sim {a[tuple(bad[0])]}, Lava {b[tuple(bad[0])]}"
