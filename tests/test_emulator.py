"""DVS emulator: the properties of a real event camera, and errors at the boundary."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import stdl_edge.emulator as emulator_module
from stdl_edge.emulator import Emulator, EmulatorConfig, emulate, emulate_batch
from stdl_edge.events import EVENT_DTYPE, validate_events

EPS = EmulatorConfig().eps


def _video(rng, n=20, h=8, w=10, lo=0.05, hi=0.95):
    """A smooth random video: each pixel drifts between lo and hi."""
    steps = rng.normal(0, 0.08, (n, h, w)).cumsum(axis=0) + rng.uniform(lo, hi, (1, h, w))
    return np.clip(steps, lo, hi)


def _from_log(log_intensity, eps=EPS):
    """Intensity whose emulator log-intensity is ``log_intensity``."""
    return np.exp(log_intensity) - eps


def test_static_scene_gives_no_events_without_noise(rng):
    frames = np.repeat(rng.uniform(0, 1, (1, 6, 7)), 10, axis=0)
    ts = np.arange(10) * 1000
    assert len(emulate(frames, ts)) == 0
    assert len(emulate(frames, ts, EmulatorConfig(mismatch_sigma=0.05, refractory_us=100))) == 0


def test_event_count_is_whole_thresholds_crossed_and_polarity_follows_the_change():
    # log intensity rises by 1.1 at pixel (0, 0) and falls by 0.7 at pixel (1, 0) (x=1, y=0)
    base = np.log(0.2 + EPS)
    log0 = np.full((1, 2), base)
    log1 = np.array([[base + 1.1, base - 0.7]])
    frames = _from_log(np.stack([log0, log1]))
    ev = emulate(frames, np.array([0, 1000]), EmulatorConfig(c_on=0.25, c_off=0.3))
    on, off = ev[ev["p"]], ev[~ev["p"]]
    assert len(on) == 4 and set(on["x"]) == {0}       # floor(1.1 / 0.25)
    assert len(off) == 2 and set(off["x"]) == {1}     # floor(0.7 / 0.3)


def test_timestamps_interpolate_the_crossings_inside_the_frame_interval():
    base = np.log(0.2 + EPS)
    frames = _from_log(np.array([[[base]], [[base + 1.1]]]))
    ev = emulate(frames, np.array([10_000, 11_000]), EmulatorConfig(c_on=0.25))
    # the log intensity crosses base + 0.25 k at k * 0.25 / 1.1 of the interval
    np.testing.assert_allclose(ev["t"], 10_000 + np.arange(1, 5) * 250 / 1.1, atol=1)
    assert ev["t"].min() >= 10_000 and ev["t"].max() < 11_000


def test_more_contrast_gives_more_events(rng):
    counts = []
    for contrast in (0.2, 0.5, 1.0, 2.0):
        frames = _from_log(np.log(0.15 + EPS) + contrast * rng.random((1, 12, 12)) * np.array([0, 1])[:, None, None])
        frames = np.clip(frames, 0, 1)
        counts.append(len(emulate(frames, np.array([0, 5000]))))
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_output_sorted_valid_and_inside_the_recording(rng):
    frames = _video(rng, n=30)
    ts = 5_000 + np.arange(30) * 1000
    ev = emulate(frames, ts, EmulatorConfig(shot_noise_hz=50.0, mismatch_sigma=0.03, refractory_us=300))
    assert ev.dtype == EVENT_DTYPE and len(ev) > 50
    validate_events(ev, (10, 8, 2), allow_empty=False)
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= ts[0] and ev["t"].max() < ts[-1]


def test_refractory_period_is_respected(rng):
    frames = _video(rng, n=40)
    ts = np.arange(40) * 500
    free = emulate(frames, ts)
    refr = emulate(frames, ts, EmulatorConfig(refractory_us=1500))
    assert len(refr) < len(free)
    for x, y in {(int(e["x"]), int(e["y"])) for e in refr}:
        t = refr["t"][(refr["x"] == x) & (refr["y"] == y)]
        assert np.all(np.diff(t) >= 1500)


def test_same_seed_same_events_and_noise_seed_matters(rng):
    frames = _video(rng)
    ts = np.arange(len(frames)) * 1000
    cfg = EmulatorConfig(shot_noise_hz=20.0, mismatch_sigma=0.03, seed=3)
    a, b = emulate(frames, ts, cfg), emulate(frames, ts, cfg)
    np.testing.assert_array_equal(a, b)
    c = emulate(frames, ts, EmulatorConfig(shot_noise_hz=20.0, mismatch_sigma=0.03, seed=4))
    assert not np.array_equal(a, c)


def test_seed_changes_nothing_unless_mismatch_or_noise_is_set(rng):
    frames = _video(rng)
    ts = np.arange(len(frames)) * 1000
    ideal = emulate(frames, ts, EmulatorConfig(seed=1))
    np.testing.assert_array_equal(ideal, emulate(frames, ts, EmulatorConfig(seed=2)))
    assert not np.array_equal(ideal, emulate(frames, ts, EmulatorConfig(mismatch_sigma=0.05)))
    assert not np.array_equal(ideal, emulate(frames, ts, EmulatorConfig(shot_noise_hz=50.0)))


def test_mismatch_draws_per_pixel_thresholds_once():
    emu = Emulator(EmulatorConfig(c_on=0.2, c_off=0.3, mismatch_sigma=0.04, seed=5), (20, 30))
    c_on, c_off = emu.thresholds
    assert c_on.shape == (20, 30)
    assert abs(c_on.mean() - 0.2) < 0.01 and abs(c_off.mean() - 0.3) < 0.01
    assert 0.03 < c_on.std() < 0.05
    emu.reset()
    np.testing.assert_array_equal(emu.thresholds[0], c_on)  # a property of the sensor
    flat = Emulator(EmulatorConfig(c_on=0.2), (2, 3)).thresholds[0]
    np.testing.assert_allclose(flat, 0.2)


def test_shot_noise_rate_matches_the_setting():
    h, w, seconds, rate = 20, 20, 0.5, 10.0
    frames = np.full((501, h, w), 0.5)
    ev = emulate(frames, np.arange(501) * 1000, EmulatorConfig(shot_noise_hz=rate))
    expected = rate * h * w * seconds  # 2000
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert 0.4 < ev["p"].mean() < 0.6


def test_negated_log_intensity_flips_polarity_exactly(rng):
    """ON and OFF are symmetric: mirroring the log intensity mirrors every event's polarity."""
    log1 = np.log(rng.uniform(0.25, 0.6, (25, 6, 6)) + EPS)
    mid = np.log(0.25 + EPS) + np.log(0.6 + EPS)
    a = emulate(_from_log(log1), np.arange(25) * 1000)
    b = emulate(_from_log(mid - log1), np.arange(25) * 1000)
    assert len(a) > 100
    a = a[np.lexsort((a["p"], a["x"], a["y"], a["t"]))]
    b = b[np.lexsort((~b["p"], b["x"], b["y"], b["t"]))]
    np.testing.assert_array_equal(a[["x", "y", "t"]], b[["x", "y", "t"]])
    np.testing.assert_array_equal(a["p"], ~b["p"])


def test_streaming_equals_whole_video_and_batch_equals_single(rng):
    videos = np.stack([_video(rng), _video(rng), _video(rng)])
    ts = np.arange(videos.shape[1]) * 1000
    whole = [emulate(v, ts) for v in videos]
    emu = Emulator(EmulatorConfig(), (8, 10))
    streamed = np.concatenate([emu.step(f, t) for f, t in zip(videos[1], ts)])
    np.testing.assert_array_equal(streamed, whole[1])
    for got, ref in zip(emulate_batch(videos, ts), whole):
        np.testing.assert_array_equal(got, ref)
    per_frame = Emulator(EmulatorConfig(), (8, 10), batch=3)
    chunks = [per_frame.step(videos[:, i], t) for i, t in enumerate(ts)]
    for b in range(3):
        np.testing.assert_array_equal(np.concatenate([c[b] for c in chunks]), whole[b])


def test_emulate_does_not_mutate_its_input(rng):
    frames = _video(rng)
    before = frames.copy()
    emulate(frames, np.arange(len(frames)) * 1000, EmulatorConfig(shot_noise_hz=5.0))
    np.testing.assert_array_equal(frames, before)


@pytest.mark.parametrize("frames, ts, match", [
    (np.full((2, 3, 3), 1.5), [0, 1000], r"\[0, 1\]"),
    (np.full((2, 3, 3), np.nan), [0, 1000], "finite"),
    (np.zeros((2, 3, 3), dtype=np.uint8), [0, 1000], "divide uint8"),
    (np.zeros((2, 3, 3)), [1000, 1000], "strictly increase"),
    (np.zeros((2, 3, 3)), [0, 1000, 2000], "one time per frame"),
    (np.zeros((3, 3)), [0], r"\(N, H, W\)"),
])
def test_bad_input_is_a_clear_error(frames, ts, match):
    with pytest.raises(ValueError, match=match):
        emulate(frames, np.asarray(ts))


def test_bad_config_and_frame_shape_are_clear_errors():
    with pytest.raises(ValueError, match="c_on"):
        EmulatorConfig(c_on=0)
    with pytest.raises(ValueError, match="shot_noise_hz"):
        EmulatorConfig(shot_noise_hz=-1)
    with pytest.raises(ValueError, match="refractory_us"):
        EmulatorConfig(refractory_us=2.5)
    emu = Emulator(EmulatorConfig(), (4, 4))
    with pytest.raises(ValueError, match="negative"):
        emu.step(np.zeros((4, 4)), -5)
    emu.step(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="expects"):
        emu.step(np.zeros((4, 5)), 1000)
    with pytest.raises(ValueError, match="not after"):
        emu.step(np.zeros((4, 4)), 0)


def test_module_doctest_runs():
    assert doctest.testmod(emulator_module).failed == 0
