"""DVS emulator: intensity frames in, events out, the way an event camera makes them.

Model (per pixel ``i``, as in v2e / ESIM, without the photoreceptor low-pass)::

    L_i(t)   = log(I_i(t) + eps)                      # log intensity, I in [0, 1]
    ON  event each time  L_i - ref_i >=  C_on,i  ->  ref_i += C_on,i
    OFF event each time  ref_i - L_i >=  C_off,i ->  ref_i -= C_off,i

Between two frames at ``t0 < t1`` the log intensity is taken to move linearly, so a
pixel that crosses ``n`` whole thresholds emits ``n`` events, the k-th at the time
``L`` crosses ``ref + k*C`` (linear interpolation between ``t0`` and ``t1``). The
reference is reset by exactly the thresholds crossed, so after each frame
``-C_off < L - ref < C_on`` (no change is lost or counted twice). The first frame
only sets the references (a camera shows no events for a static scene).

Sensor non-idealities, all off by default and drawn from ``config.seed``:

- threshold mismatch: per-pixel ``C_on,i ~ N(C_on, sigma)``, ``C_off,i ~ N(C_off, sigma)``
  drawn once per sensor (clipped at ``MIN_THRESHOLD``);
- shot noise: Poisson events at ``shot_noise_hz`` per pixel (either polarity, uniform
  in time); they do not move the reference;
- refractory period: after an event a pixel emits nothing for ``refractory_us``; the
  reference still follows the light meanwhile (the pixel is held in reset), so
  suppressed events are lost, not delayed.

Timestamps are integer microseconds: an event whose crossing time is in ``(t0, t1]``
is stamped ``floor(t_cross)`` clipped to ``[t0, t1 - 1]``, so the events of one frame
interval lie in the half-open ``[t0, t1)`` like a binning step.

:func:`emulate` converts one video; :class:`Emulator` takes one frame at a time and
keeps only the per-pixel state (bounded memory for any stream length), optionally for
a batch of ``B`` videos seen by the same sensor; :func:`emulate_batch` converts ``B``
videos that share timestamps in one vectorised pass (how the bundled data sets are made).

>>> import numpy as np
>>> frames = np.stack([np.full((2, 2), 0.2), np.full((2, 2), 0.8)])
>>> ev = emulate(frames, np.array([0, 1000]), EmulatorConfig(c_on=0.5))
>>> len(ev), bool(ev["p"].all())   # log(0.9/0.3) = 1.10 -> 2 ON events per pixel
(8, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from .events import EVENT_DTYPE, make_events, validate_events

#: smallest per-pixel threshold after mismatch, in log-intensity units (keeps event counts finite)
MIN_THRESHOLD = 0.01


@dataclass(frozen=True)
class EmulatorConfig:
    """Settings of the emulated event camera.

    c_on: ON contrast threshold, in natural-log intensity units (0.2 = a 22 % brightness rise).
    c_off: OFF contrast threshold, same units, positive (0.2 = an 18 % brightness fall).
    mismatch_sigma: standard deviation of the per-pixel thresholds around ``c_on``/``c_off``,
        same units (0 = ideal pixels; real sensors ~0.02-0.05).
    shot_noise_hz: rate of noise events per pixel, in events per second (both polarities).
    refractory_us: dead time of a pixel after an event, in microseconds (0 = none).
    eps: dark offset added before the log, in the units of the intensity (full scale = 1);
        bounds the log contrast of black pixels (log((1 + eps) / eps) for black -> white).
    seed: seeds mismatch and noise; the same seed gives the same events.
    """

    c_on: float = 0.2
    c_off: float = 0.2
    mismatch_sigma: float = 0.0
    shot_noise_hz: float = 0.0
    refractory_us: int = 0
    eps: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("c_on", "c_off", "eps"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"EmulatorConfig.{name}={v} must be a positive finite number")
        for name in ("mismatch_sigma", "shot_noise_hz"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"EmulatorConfig.{name}={v} must be >= 0")
        if int(self.refractory_us) != self.refractory_us or self.refractory_us < 0:
            raise ValueError(f"EmulatorConfig.refractory_us={self.refractory_us} must be a whole number "
                             f"of microseconds >= 0")


class EmulatorState(NamedTuple):
    """Per-pixel state, each array of the sensor's shape ``(B, H, W)`` flattened to ``(B*H*W,)``.

    log_ref: reference log intensity of each pixel.
    log_prev: log intensity of the last frame.
    last_event_us: time of each pixel's last emitted event (for the refractory period).
    t_prev_us: time of the last frame, microseconds.
    """

    log_ref: np.ndarray
    log_prev: np.ndarray
    last_event_us: np.ndarray
    t_prev_us: int


class PixelEvents(NamedTuple):
    """Events of one frame interval over a flattened pixel array, sorted by (t, pixel)."""

    pixel: np.ndarray  # int64 flat index into (B, H, W)
    t: np.ndarray      # int64 microseconds
    p: np.ndarray      # bool, True = ON


def _check_frame(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.shape != shape:
        raise ValueError(f"frame has shape {frame.shape}; this emulator expects {shape}")
    if frame.dtype.kind != "f":
        raise ValueError(f"frames must be float intensities in [0, 1], got dtype {frame.dtype} "
                         f"(divide uint8 frames by 255)")
    lo, hi = (float(frame.min()), float(frame.max())) if frame.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
        raise ValueError(f"frame values span [{lo}, {hi}]; intensities must be finite and in [0, 1] "
                         f"(normalise or clip the video first)")
    return frame


def emulator_step(state: EmulatorState, log_frame: np.ndarray, t_us: int, c_on: np.ndarray,
                  c_off: np.ndarray, config: EmulatorConfig,
                  rng: np.random.Generator) -> tuple[EmulatorState, PixelEvents]:
    """Advance the pixels from ``state.t_prev_us`` to ``t_us``; pure apart from drawing noise from ``rng``.

    log_frame: ``(P,)`` float32 log intensity at ``t_us``; c_on, c_off: ``(P,)`` thresholds
    (or scalars). Returns the new state and the interval's events (``t`` in ``[t0, t_us)``).
    """
    t0, t1 = state.t_prev_us, int(t_us)
    if t1 <= t0:
        raise ValueError(f"frame time {t1} us is not after the previous frame's {t0} us; "
                         f"timestamps must strictly increase")
    ref, prev = state.log_ref, state.log_prev
    diff = log_frame - ref
    pix = np.flatnonzero((diff >= c_on) | (diff <= -c_off))  # firing pixels (few): work on them only
    d = diff[pix]
    con, coff = _at(c_on, pix), _at(c_off, pix)
    n_on = np.maximum(np.floor(d / con), 0)
    n_off = np.maximum(np.floor(-d / coff), 0)
    new_ref = ref.copy()
    new_ref[pix] += n_on * con - n_off * coff

    # Expand each firing pixel into its n events: the k-th crosses ref + s*k*C.
    counts = (n_on + n_off).astype(np.int64)
    pixel = np.repeat(pix, counts)
    starts = np.cumsum(counts) - counts
    k = np.arange(len(pixel), dtype=np.int64) - np.repeat(starts, counts) + 1
    on = np.repeat(n_on > 0, counts)
    c = np.repeat(np.where(n_on > 0, con, -coff), counts)
    level = ref[pixel] + k * c
    span = log_frame[pixel] - prev[pixel]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(span != 0, (level - prev[pixel]) / span, 1.0)
    np.clip(frac, 0.0, 1.0, out=frac)
    t = np.clip(np.floor(t0 + frac * (t1 - t0)).astype(np.int64), t0, t1 - 1)
    p = on

    if config.shot_noise_hz > 0:
        lam = config.shot_noise_hz * len(ref) * (t1 - t0) * 1e-6
        m = int(rng.poisson(lam))
        pixel = np.concatenate([pixel, rng.integers(0, len(ref), m)])
        t = np.concatenate([t, rng.integers(t0, t1, m)])
        p = np.concatenate([p, rng.random(m) < 0.5])

    last = state.last_event_us
    if len(pixel) and config.refractory_us > 0:
        keep, last = _refractory(pixel, t, last, int(config.refractory_us))
        pixel, t, p = pixel[keep], t[keep], p[keep]
    order = np.lexsort((pixel, t))
    events = PixelEvents(pixel[order], t[order], p[order])
    return EmulatorState(new_ref, log_frame, last, t1), events


def _at(c: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Thresholds of pixels ``idx`` (``c`` is per pixel or a scalar)."""
    return c[idx] if np.ndim(c) else np.full(len(idx), c, dtype=np.float32)


def _refractory(pixel: np.ndarray, t: np.ndarray, last: np.ndarray, refr: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep an event only if its pixel's last kept event is >= ``refr`` us earlier (greedy in time)."""
    order = np.lexsort((t, pixel))
    sp = pixel[order]
    first = np.r_[True, sp[1:] != sp[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(sp)), 0))
    rank = np.arange(len(sp)) - group_start
    keep = np.zeros(len(pixel), dtype=bool)
    last = last.copy()
    for r in range(int(rank.max()) + 1):  # pixels are unique within one rank
        sel = order[rank == r]
        ok = t[sel] - last[pixel[sel]] >= refr
        sel = sel[ok]
        keep[sel] = True
        last[pixel[sel]] = t[sel]
    return keep, last


class Emulator:
    """Stateful, frame-by-frame emulator for streams of any length (memory: a few arrays per pixel).

    ``Emulator(config, (H, W))`` takes frames ``(H, W)`` and returns an :data:`EVENT_DTYPE`
    array per frame. ``Emulator(config, (H, W), batch=B)`` takes ``(B, H, W)`` (B videos seen
    by the same sensor, i.e. the same mismatch) and returns a list of ``B`` event arrays.
    The first frame sets the references and returns no events.

    Mismatch is drawn from ``config.seed`` alone (it is a property of the sensor); noise
    from ``(config.seed, recording)``, so several recordings with one sensor get
    independent noise.
    """

    def __init__(self, config: EmulatorConfig, sensor_hw: tuple[int, int], batch: int | None = None,
                 recording: int = 0) -> None:
        h, w = (int(v) for v in sensor_hw)
        if h <= 0 or w <= 0:
            raise ValueError(f"sensor size {sensor_hw} must be two positive integers (height, width)")
        if batch is not None and int(batch) <= 0:
            raise ValueError(f"batch={batch} must be a positive integer or None")
        self.config = config
        self.height, self.width = h, w
        self.batch = None if batch is None else int(batch)
        self.frame_shape = (h, w) if batch is None else (self.batch, h, w)
        self.recording = int(recording)
        self.reset()

    def reset(self) -> None:
        """Forget the references (the next frame starts a new recording); mismatch and the RNG restart."""
        cfg = self.config
        self._rng = np.random.default_rng([cfg.seed, self.recording])
        h, w = self.height, self.width
        if cfg.mismatch_sigma > 0:
            sensor_rng = np.random.default_rng(cfg.seed)
            c_on = np.maximum(sensor_rng.normal(cfg.c_on, cfg.mismatch_sigma, (h, w)), MIN_THRESHOLD)
            c_off = np.maximum(sensor_rng.normal(cfg.c_off, cfg.mismatch_sigma, (h, w)), MIN_THRESHOLD)
            reps = self.batch or 1
            self._c_on = np.tile(c_on.ravel(), reps).astype(np.float32)
            self._c_off = np.tile(c_off.ravel(), reps).astype(np.float32)
        else:
            self._c_on, self._c_off = np.float32(cfg.c_on), np.float32(cfg.c_off)
        self.state: EmulatorState | None = None

    @property
    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel ``(C_on, C_off)``, each ``(H, W)``."""
        hw = self.height * self.width
        return tuple(np.array(np.broadcast_to(c, (hw,)) if np.ndim(c) == 0 else c[:hw])
                     .reshape(self.height, self.width) for c in (self._c_on, self._c_off))

    def step_pixels(self, frame: np.ndarray, t_us: int) -> PixelEvents:
        """Like :meth:`step` but returns the flat :class:`PixelEvents` (index into ``frame_shape``)."""
        frame = _check_frame(frame, self.frame_shape)
        if int(t_us) < 0:
            raise ValueError(f"frame time {t_us} us is negative; times must be >= 0 microseconds")
        log_frame = frame.astype(np.float32, copy=False).reshape(-1) + np.float32(self.config.eps)
        np.log(log_frame, out=log_frame)
        if self.state is None:
            n = log_frame.size
            self.state = EmulatorState(log_frame, log_frame, np.full(n, np.iinfo(np.int64).min // 2), int(t_us))
            empty = np.zeros(0, dtype=np.int64)
            return PixelEvents(empty, empty.copy(), np.zeros(0, dtype=bool))
        self.state, events = emulator_step(self.state, log_frame, int(t_us), self._c_on, self._c_off,
                                           self.config, self._rng)
        return events

    def step(self, frame: np.ndarray, t_us: int) -> np.ndarray | list[np.ndarray]:
        """Feed the frame taken at ``t_us`` (microseconds); return the events since the last frame."""
        ev = self.step_pixels(frame, t_us)
        if self.batch is None:
            return _pixel_events(ev.pixel, ev.t, ev.p, self.width, self.height)
        b = ev.pixel // (self.height * self.width)
        order = np.argsort(b, kind="stable")  # keeps time order inside each video
        bounds = np.searchsorted(b[order], np.arange(1, self.batch))
        local = ev.pixel[order] % (self.height * self.width)
        return [_pixel_events(px, tt, pp, self.width, self.height)
                for px, tt, pp in zip(np.split(local, bounds), np.split(ev.t[order], bounds),
                                      np.split(ev.p[order], bounds))]


def _pixel_events(pixel: np.ndarray, t: np.ndarray, p: np.ndarray, width: int, height: int) -> np.ndarray:
    """Events at flat pixel indices ``(b * H + y) * W + x`` (any batch index ``b``), through :func:`make_events`."""
    pixel = pixel % (height * width)
    return make_events(pixel % width, pixel // width, t, p)


def _check_times(timestamps_us: np.ndarray, n: int) -> np.ndarray:
    ts = np.asarray(timestamps_us)
    if ts.shape != (n,):
        raise ValueError(f"timestamps_us has shape {ts.shape}; need one time per frame, shape ({n},)")
    if ts.dtype.kind not in "iu" and not np.all(ts == np.round(ts)):
        raise ValueError("timestamps_us must be whole microseconds")
    ts = ts.astype(np.int64)
    if n and ts[0] < 0:
        raise ValueError(f"timestamps_us starts at {ts[0]}; times must be >= 0 microseconds")
    if n > 1 and np.any(np.diff(ts) <= 0):
        i = int(np.flatnonzero(np.diff(ts) <= 0)[0])
        raise ValueError(f"timestamps_us must strictly increase: frame {i + 1} at {ts[i + 1]} us "
                         f"follows {ts[i]} us")
    return ts


def emulate(frames: np.ndarray, timestamps_us: np.ndarray, config: EmulatorConfig = EmulatorConfig()) -> np.ndarray:
    """Events of one video: ``frames (N, H, W)`` float in [0, 1] taken at ``timestamps_us (N,)``.

    Returns a sorted, validated :data:`EVENT_DTYPE` array with ``t`` in
    ``[timestamps_us[0], timestamps_us[-1])``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames has shape {frames.shape}; emulate expects (N, H, W) (one video)")
    ts = _check_times(timestamps_us, len(frames))
    emu = Emulator(config, frames.shape[1:])
    chunks = [emu.step(f, t) for f, t in zip(frames, ts)]
    events = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)
    return validate_events(events, (frames.shape[2], frames.shape[1], 2))


def emulate_batch(videos: np.ndarray, timestamps_us: np.ndarray,
                  config: EmulatorConfig = EmulatorConfig()) -> list[np.ndarray]:
    """Events of ``B`` videos ``(B, N, H, W)`` sharing ``timestamps_us (N,)``, one sensor (one mismatch draw).

    Without noise, each video's events equal :func:`emulate` on that video alone; noise
    is drawn for the whole batch, so it depends on the batch's make-up (and the seed).
    """
    videos = np.asarray(videos)
    if videos.ndim != 4:
        raise ValueError(f"videos has shape {videos.shape}; emulate_batch expects (B, N, H, W)")
    b, n, h, w = videos.shape
    ts = _check_times(timestamps_us, n)
    emu = Emulator(config, (h, w), batch=b)
    return run_batch(emu, (videos[:, i] for i in range(n)), ts)


def run_batch(emu: Emulator, frames: Iterable[np.ndarray], timestamps_us: np.ndarray) -> list[np.ndarray]:
    """Feed a batched :class:`Emulator` an iterable of ``(B, H, W)`` frames; return each video's events.

    Frames may be rendered on the fly (a generator), so the videos never need to be in memory.
    """
    ts = np.asarray(timestamps_us, dtype=np.int64)
    pix, tt, pp = [], [], []
    for frame, t in zip(frames, ts):
        ev = emu.step_pixels(frame, int(t))
        pix.append(ev.pixel)
        tt.append(ev.t)
        pp.append(ev.p)
    hw = emu.height * emu.width
    pixel = np.concatenate(pix) if pix else np.zeros(0, dtype=np.int64)
    t = np.concatenate(tt) if tt else np.zeros(0, dtype=np.int64)
    p = np.concatenate(pp) if pp else np.zeros(0, dtype=bool)
    sample = pixel // hw
    order = np.argsort(sample, kind="stable")  # time order is kept inside each video
    bounds = np.searchsorted(sample[order], np.arange(1, emu.batch or 1))
    out = []
    for px, t_, p_ in zip(np.split(pixel[order], bounds), np.split(t[order], bounds), np.split(p[order], bounds)):
        out.append(validate_events(_pixel_events(px, t_, p_, emu.width, emu.height),
                                   (emu.width, emu.height, 2)))
    return out
