"""Event validation and binning: errors at the boundary, streaming equals whole-array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stdl_edge import binning
from stdl_edge import events as events_module
from stdl_edge.binning import BinSpec, EventBinner, bin_events, bin_windows
from stdl_edge.events import EVENT_DTYPE, EventColumns, EventError, as_events, check_columns, make_events, \
    validate_events

SENSOR = (34, 34, 2)


def test_dtype_is_tonic_events_struct():
    assert EVENT_DTYPE.names == ("x", "y", "t", "p")
    assert [EVENT_DTYPE[f] for f in "xytp"] == [np.int16, np.int16, np.int64, np.bool_]


def test_binary_and_count_modes():
    ev = make_events([1, 1, 2], [0, 0, 3], [0, 5, 12], [True, True, False])
    binary = bin_events(ev, SENSOR, BinSpec(10, "binary"))
    count = bin_events(ev, SENSOR, BinSpec(10, "count"))
    assert binary.shape == (2, 2, 34, 34) and binary.dtype == np.float32
    assert binary[0, 1, 0, 1] == 1 and count[0, 1, 0, 1] == 2
    assert count[1, 0, 3, 2] == 1 and count.sum() == 3


def test_num_steps_pads_and_truncates():
    ev = make_events([0, 0], [0, 0], [5, 95], [True, True])
    assert bin_events(ev, SENSOR, BinSpec(10), num_steps=20).shape[0] == 20
    assert bin_events(ev, SENSOR, BinSpec(10), num_steps=3).sum() == 1


def test_binning_does_not_mutate_input(random_events):
    ev = random_events(500)
    before = ev.copy()
    bin_events(ev, SENSOR, BinSpec(1000))
    assert np.array_equal(ev, before)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 400), dt=st.integers(1, 30_000), cuts=st.lists(st.integers(0, 400), max_size=8),
       t_start=st.integers(0, 5_000), seed=st.integers(0, 2**16), mode=st.sampled_from(["binary", "count"]))
def test_streaming_binning_equals_whole_array(n, dt, cuts, t_start, seed, mode):
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 60_000, n)),
                     rng.integers(0, 2, n))
    spec = BinSpec(dt, mode, t_start)
    whole = bin_events(ev, SENSOR, spec)
    binner = EventBinner(SENSOR, spec)
    chunks = np.split(ev, sorted(min(c, n) for c in cuts))
    frames = [binner.push(c) for c in chunks] + [binner.flush()]
    streamed = np.concatenate(frames)
    assert streamed.shape == whole.shape
    assert np.array_equal(streamed, whole)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), dt=st.integers(1, 3_000), window=st.integers(1, 9),
       cuts=st.lists(st.integers(0, 400), max_size=8), t0=st.sampled_from([0, 913_000_000, 1_590_000_000_000_000]),
       seed=st.integers(0, 2**16), mode=st.sampled_from(["binary", "count"]))
def test_windows_equal_the_whole_array_binned(n, dt, window, cuts, t0, seed, mode):
    """bin_windows: window k = steps k*W.. of bin_events from the same origin; windows without
    events are left out; every window is the same buffer of W frames (bounded memory)."""
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t0 + np.sort(rng.integers(0, 60_000, n)),
                     rng.integers(0, 2, n))
    spec = BinSpec(dt, mode, int(ev["t"][0]))
    whole = bin_events(ev, SENSOR, spec)
    got = np.zeros_like(whole)
    buffers, windows = set(), []
    for w in bin_windows(np.split(ev, sorted(min(c, n) for c in cuts)), SENSOR, spec, window):
        windows.append(w)  # its frames are overwritten by the next window: copied into got now
        lo = w.index * window
        got[lo:lo + len(w.frames)] = w.frames
        assert w.t_us == spec.t_start_us + lo * dt and w.frames.shape[0] <= window and w.events > 0
        buffers.add(w.frames.__array_interface__["data"][0])
    assert np.array_equal(got, whole) and len(buffers) == 1
    assert sum(w.events for w in windows) == n
    nonempty = {k // window for k in np.flatnonzero(whole.reshape(len(whole), -1).any(1))}
    assert [w.index for w in windows] == sorted(nonempty)


def test_windows_restart_after_a_gap():
    ev = make_events([1, 2, 3, 4], [0, 0, 0, 0], [5_000, 7_000, 3_600_000_000, 3_600_004_500], [1, 1, 0, 1])
    windows = list(bin_windows([ev[:3], ev[3:]], SENSOR, BinSpec(1000, t_start_us=5_000), 4,
                               restart_gap_us=1_000_000))
    assert [(w.index, w.t_us, w.events, w.restarted, len(w.frames)) for w in windows] == [
        (0, 5_000, 2, False, 4), (1, 3_600_000_000, 1, True, 4), (2, 3_600_004_000, 1, False, 1)]


@pytest.mark.parametrize("make_bad, needle", [
    (lambda: np.zeros(3), "structured array"),
    (lambda: np.zeros(3, dtype=[("x", "i2"), ("y", "i2"), ("t", "i8")]), "lack field"),
    (lambda: np.zeros(3, dtype=[("x", "f4"), ("y", "i2"), ("t", "i8"), ("p", "?")]), "'x' has dtype float32"),
    (lambda: make_events([0, 0], [0, 0], [10, 5], [1, 1]), "not sorted"),
    (lambda: make_events([0], [0], [-1], [1]), "negative timestamp"),
    (lambda: make_events([34], [0], [0], [1]), "x=34 outside the sensor"),
    (lambda: make_events([0], [-1], [0], [1]), "y=-1 outside the sensor"),
])
def test_bad_events_get_a_clear_error(make_bad, needle):
    with pytest.raises(EventError, match=needle):
        validate_events(make_bad(), SENSOR)


def test_stream_rejects_time_going_backwards_across_chunks():
    binner = EventBinner(SENSOR, BinSpec(10))
    binner.push(make_events([0], [0], [100], [1]))
    with pytest.raises(EventError, match="backwards across chunks"):
        binner.push(make_events([0], [0], [50], [1]))


def test_empty_input_is_rejected_when_required():
    with pytest.raises(EventError, match="empty"):
        validate_events(np.zeros(0, dtype=EVENT_DTYPE), allow_empty=False)


def test_bad_dt_is_rejected():
    with pytest.raises(EventError, match="dt_us=0"):
        BinSpec(0)


def test_binner_does_not_depend_on_the_callers_buffer(random_events):
    # a reader may reuse one buffer for every chunk: pending events must be copies
    ev = random_events(2_000, duration_us=50_000)
    spec = BinSpec(7_000)
    expected = bin_events(ev, SENSOR, spec)
    binner = EventBinner(SENSOR, spec)
    buffer = np.empty(500, dtype=EVENT_DTYPE)
    frames = []
    for start in range(0, len(ev), 500):
        buffer[:] = ev[start:start + 500]
        frames.append(binner.push(buffer))
        buffer[:] = ev[::-1][:500]  # scribble over it after the push
    frames.append(binner.flush())
    assert np.array_equal(np.concatenate(frames), expected)


def test_as_events_converts_any_integer_layout_by_field_name():
    raw = np.zeros(3, dtype=[("t", "<u8"), ("on", "u1"), ("y", "<u2"), ("x", "<i4"), ("extra", "f4")])
    raw["t"], raw["on"], raw["y"], raw["x"] = [1, 2, 3], [0, 1, 1], [4, 5, 6], [7, 8, 9]
    ev = as_events(raw)
    assert ev.dtype == EVENT_DTYPE
    assert ev.tolist() == [(7, 4, 1, False), (8, 5, 2, True), (9, 6, 3, True)]
    ev["x"] = 0
    assert raw["x"].tolist() == [7, 8, 9]  # a new array, never the caller's
    same = make_events([1], [2], [3], [True])
    assert as_events(same) is same  # already EVENT_DTYPE: no copy
    mapping = as_events({"x": np.array([1.0]), "y": [2], "t": [3], "polarity": [1]})
    assert mapping.tolist() == [(1, 2, 3, True)]


@pytest.mark.parametrize("bad, needle", [
    (np.zeros(2), "structured array"),
    ([(1, 2, 3, 1)], "structured array"),
    (np.zeros(2, dtype=[("x", "i2"), ("y", "i2"), ("t", "i8")]), r"lack field\(s\) p"),
    ({"x": [1], "t": [1], "p": [1]}, r"lack field\(s\) y"),
    ({"x": [1], "y": [1, 2], "t": [1], "p": [1]}, "different lengths"),
    ({"x": [1.5], "y": [1], "t": [1], "p": [1]}, "x=1.5, not a whole number"),
    ({"x": [40_000], "y": [1], "t": [1], "p": [1]}, "x=40000, outside int16"),
    ({"x": [1], "y": [1], "t": np.array([2**63], np.uint64), "p": [1]}, "outside int64"),
    ({"x": [1], "y": [1], "t": [1], "p": [-1]}, "polarity -1; polarity must be 0/1"),
    ({"x": ["a"], "y": [1], "t": [1], "p": [1]}, "'x' has dtype"),
])
def test_as_events_errors_name_the_field(bad, needle):
    with pytest.raises(EventError, match=needle):
        as_events(bad)


@pytest.mark.parametrize("bad, needle, index", [
    ({"x": [1, np.nan], "y": [1, 1], "t": [1, 2], "p": [1, 1]}, "x=nan, not a finite number", 1),
    ({"x": [1, 1], "y": [1, 1], "t": [1, np.inf], "p": [1, 1]}, "t=inf, not a finite number", 1),
    ({"x": [1, 1], "y": [1, 1], "t": [0.25, 0.5], "p": [1, 1]}, r"t=0.25, not a whole number of microseconds.*"
                                                                r"time_unit='s'", 0),
    ({"x": [1, 1], "y": [1, 1], "t": [1, 2], "p": [1.0, 0.5]}, "p=0.5, not a whole number", 1),
    ({"x": [1, 1], "y": [1, 1], "t": [1, 2], "p": [1.0, np.nan]}, "p=nan, not a finite number", 1),
])
def test_as_events_refuses_non_finite_fractional_and_names_the_event(bad, needle, index):
    with pytest.raises(EventError, match=needle) as info:
        as_events(bad)
    assert info.value.index == index and str(info.value).startswith(f"event {index} ")


def test_time_unit_converts_seconds_and_milliseconds_to_whole_microseconds():
    raw = {"x": [1, 2], "y": [0, 0], "t": [0.25, 1.0000004], "p": [1, 0]}
    assert as_events(raw, time_unit="s")["t"].tolist() == [250_000, 1_000_000]
    assert as_events({**raw, "t": np.array([3, 7])}, time_unit="ms")["t"].tolist() == [3000, 7000]
    with pytest.raises(EventError, match="beyond the int64"):
        as_events({**raw, "t": np.array([1, 2 ** 62])}, time_unit="ms")
    with pytest.raises(EventError, match="time_unit='h' is unknown"):
        as_events(raw, time_unit="h")


def test_validation_errors_carry_the_offending_event():
    with pytest.raises(EventError) as info:
        validate_events(make_events([0, 0, 0], [0, 0, 0], [1, 5, 3], [1, 1, 1]), SENSOR)
    assert info.value.index == 2 and "not sorted" in str(info.value)
    with pytest.raises(EventError) as info:
        validate_events(make_events([0, 40], [0, 0], [1, 2], [1, 1]), SENSOR)
    assert info.value.index == 1 and str(info.value).startswith("event 1 has x=40 outside the sensor")


# ----------------------------------------------------------------------------- compiled fast paths
needs_numba = pytest.mark.skipif(binning._window_kernel() is None, reason="numba not installed (the fast extra)")


@needs_numba
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 600), dt=st.integers(1, 2_000), window=st.integers(1, 7),
       cuts=st.lists(st.integers(0, 600), max_size=6), t0=st.sampled_from([0, 913_000_000]),
       gap=st.sampled_from([None, 5_000]), seed=st.integers(0, 2**16), mode=st.sampled_from(["binary", "count"]))
def test_compiled_window_binning_equals_numpy(n, dt, window, cuts, t0, gap, seed, mode):
    """The numba window kernel gives every window the numpy path gives: frames, index, time,
    events, restarts (streams with gaps, restarts and late starts)."""
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t0 + np.sort(rng.integers(0, 60_000, n)),
                     rng.integers(0, 2, n))
    spec = BinSpec(dt, mode, int(ev["t"][0]))

    def windows():
        return [(w.index, w.t_us, w.events, w.restarted, w.frames.copy()) for w in
                bin_windows(np.split(ev, sorted(min(c, n) for c in cuts)), SENSOR, spec, window, restart_gap_us=gap)]

    fast = windows()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(binning, "_window_kernel", lambda: None)
        slow = windows()
    assert len(fast) == len(slow) > 0
    for a, b in zip(fast, slow):
        assert a[:4] == b[:4] and np.array_equal(a[4], b[4])


@needs_numba
@pytest.mark.parametrize("field, value, needle", [
    ("t", -5, "negative timestamp"), ("t", None, "not sorted"), ("x", 34, "x=34 outside"), ("y", -1, "y=-1 outside"),
    ("p", 2, "polarity 2"), (None, None, None)])
def test_compiled_event_checks_flag_what_numpy_flags(field, value, needle):
    """The one-pass compiled check passes exactly the columns numpy passes; whatever it flags
    gets numpy's message (which names the value and the event)."""
    rng = np.random.default_rng(0)
    n = 1000
    cols = EventColumns(rng.integers(0, 34, n).astype(np.int16), rng.integers(0, 34, n).astype(np.int16),
                        np.sort(rng.integers(0, 10**9, n)), rng.integers(0, 2, n).astype(np.int8))
    if field == "t" and value is None:
        cols.t[700] = cols.t[699] - 1
    elif field is not None:
        getattr(cols, field)[0 if field == "t" else 500] = value
    for kernel in (events_module._columns_kernel, lambda: None):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(events_module, "_columns_kernel", kernel)
            if needle is None:
                check_columns(cols, SENSOR, after_t=int(cols.t[0]))
                with pytest.raises(EventError, match="timestamps go backwards across chunks"):
                    check_columns(cols, SENSOR, after_t=int(cols.t[0]) + 1)
            else:
                with pytest.raises(EventError, match=needle):
                    check_columns(cols, SENSOR)
