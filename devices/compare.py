"""Compare devices step by step on the same frames; find each device's artifact in a run folder.

:class:`Comparison` drives several opened devices in lockstep (one ``step`` each per time
step, ``record=True``), and for every pair:

- **traces**, where both devices have the same ``latency`` (so step ``t`` of one is step
  ``t`` of the other): every recorded key both devices have (layer spikes ``<layer>``,
  states ``<layer>/u``, ``<layer>/v``) at every step. Spikes (0/1 outputs) and fixed-point
  values (integer dtype, or whole numbers in a float array) must be equal exactly; float
  states and float readout voltages to ``state_rtol``/``state_atol`` (two
  float programs of the same maths differ in the last bits: BatchNorm is folded in the
  ONNX graph and the kernels sum in another order);
- **predictions**: argmax of the latency-aligned time-averaged readout, as
  :func:`~stdl_edge.devices.base.classify` computes it.

A pair that should be identical (:data:`IDENTITY_PAIRS`: torch vs onnxruntime, loihi-sim
vs lava) fails on any trace mismatch or any differing prediction; other pairs (float vs
fixed point) report agreement only. Mismatches name the key (layer), step and sample.

**Threshold ties.** Two float programs of the same maths sum in a different order, so a
voltage that lands within rounding of the threshold (``|v_a - v_b|`` within the state
tolerance, yet one fires and the other does not) can spike on one device only. That is a
tie, not a wrong export: it is reported separately (layer, step, sample, both voltages),
and that sample is left out of the rest of the comparison, since the two runs then follow
different trajectories. Integer (fixed-point) devices cannot tie.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from .base import Device

#: device pairs that run the same arithmetic and must agree exactly
IDENTITY_PAIRS = (frozenset({"torch", "onnxruntime"}), frozenset({"loihi-sim", "lava"}))

def expects_identity(a: str, b: str) -> bool:
    """Whether devices ``a`` and ``b`` must give identical spikes, states and predictions."""
    return frozenset({a, b}) in IDENTITY_PAIRS


@dataclass(frozen=True)
class Mismatch:
    """First difference of one recorded key in one sample."""

    key: str  # layer name, or '<layer>/u', '<layer>/v'
    step: int  # time step (device steps, from 0)
    sample: int  # sample index over the whole comparison
    count: int  # elements that differ in that sample at that step
    max_abs: float  # largest absolute difference there

    def describe(self) -> str:
        return (f"layer {self.key} step {self.step} sample {self.sample}: {self.count} value(s) differ "
                f"(max |diff| {self.max_abs:.3g})")


@dataclass
class PairResult:
    """Outcome for one pair of devices over all batches seen so far."""

    a: str
    b: str
    identity: bool  # identical results expected
    traced: bool  # traces compared step by step (same latency)
    keys: set[str] = field(default_factory=set)  # recorded keys compared
    compared: int = 0  # values compared
    differing: int = 0  # values that differ
    mismatches: list[Mismatch] = field(default_factory=list)  # first per (key, sample), capped
    mismatched_samples: set[int] = field(default_factory=set)
    ties: list[Mismatch] = field(default_factory=list)  # float threshold ties, first per sample
    tied_samples: set[int] = field(default_factory=set)
    samples: int = 0
    agree: int = 0  # samples with the same prediction

    @property
    def agreement(self) -> float:
        return self.agree / self.samples if self.samples else float("nan")

    @property
    def value_agreement(self) -> float:
        return 1.0 - self.differing / self.compared if self.compared else float("nan")

    @property
    def ok(self) -> bool:
        """True unless identity is expected and anything differs."""
        return not self.identity or (self.differing == 0 and not self.mismatched_samples)


def _whole(a: np.ndarray) -> bool:
    """Integer dtype, or floats that are all whole numbers (spikes, fixed point in a float array)."""
    return a.dtype.kind in "iub" or bool(np.array_equal(a, np.trunc(a)))


def _exact(x: np.ndarray, y: np.ndarray) -> bool:
    """Spikes (0/1) and fixed-point values compare exactly; float states and float readout
    voltages (anything not whole-valued in either device) to the tolerances."""
    return _whole(x) and _whole(y)


class Comparison:
    """Run devices in lockstep on batches of frames and collect :class:`PairResult` per pair.

    devices: name -> opened device (opened with ``record=True`` for trace comparison).
    max_reported: how many mismatches each pair keeps (all are counted).
    """

    def __init__(self, devices: dict[str, Device], state_rtol: float = 1e-4, state_atol: float = 1e-4,
                 max_reported: int = 20) -> None:
        if len(devices) < 1:
            raise ValueError("compare at least one device")
        self.devices = devices
        self.state_rtol, self.state_atol = state_rtol, state_atol
        self.max_reported = max_reported
        names = list(devices)
        self.pairs = {(a, b): PairResult(a, b, expects_identity(a, b), devices[a].latency == devices[b].latency)
                      for a, b in combinations(names, 2)}
        self.correct = {n: 0 for n in names}
        self.samples = 0
        self.labelled = 0
        self.predictions: dict[str, list[np.ndarray]] = {n: [] for n in names}
        self._reported: set[tuple[str, str, str, int]] = set()

    def add_batch(self, frames: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Run one batch ``frames (T, B, C, H, W)`` (labels ``(B,)`` optional) through every device."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 5:
            raise ValueError(f"frames must be (T, B, C, H, W), got shape {frames.shape}")
        steps, batch = frames.shape[:2]
        offset = self.samples
        for dev in self.devices.values():
            dev.reset(batch)
        totals = {n: np.zeros((batch, d.num_classes), dtype=np.float64) for n, d in self.devices.items()}
        horizon = steps + max(d.latency for d in self.devices.values())
        empty = np.zeros_like(frames[0])
        for t in range(horizon):
            frame = frames[t] if t < steps else empty
            recs = {}
            for name, dev in self.devices.items():
                y = dev.step(frame)
                if dev.latency <= t < steps + dev.latency:
                    totals[name] += y
                recs[name] = dev.recorded()
            for (a, b), pair in self.pairs.items():
                if pair.traced:
                    self._compare_step(pair, recs[a], recs[b], t, offset)
        preds = {n: (tot / max(steps, 1)).argmax(axis=1) for n, tot in totals.items()}
        for n, p in preds.items():
            self.predictions[n].append(p)
            if labels is not None:
                self.correct[n] += int((p == np.asarray(labels)).sum())
        for (a, b), pair in self.pairs.items():
            pair.samples += batch
            same = preds[a] == preds[b]
            pair.agree += int(same.sum())
            if pair.identity:
                for i in np.flatnonzero(~same):
                    if offset + int(i) in pair.tied_samples:
                        continue  # diverged at a threshold tie (reported as such)
                    pair.mismatched_samples.add(offset + int(i))
                    self._report(pair, Mismatch("prediction", steps - 1, offset + int(i), 1, float("nan")))
        self.samples += batch
        if labels is not None:
            self.labelled += batch

    def _report(self, pair: PairResult, m: Mismatch) -> None:
        tag = (pair.a, pair.b, m.key, m.sample)
        if tag in self._reported or len(pair.mismatches) >= self.max_reported:
            return
        self._reported.add(tag)
        pair.mismatches.append(m)

    def _find_ties(self, pair: PairResult, ra: dict[str, np.ndarray], rb: dict[str, np.ndarray],
                   t: int, offset: int) -> None:
        """Mark samples whose spikes differ only where both float voltages agree within tolerance."""
        for key in sorted(ra.keys() & rb.keys()):
            vkey = f"{key}/v"
            if "/" in key or vkey not in ra or vkey not in rb:
                continue
            x, y = np.asarray(ra[key]), np.asarray(rb[key])
            va, vb = np.asarray(ra[vkey], dtype=np.float64), np.asarray(rb[vkey], dtype=np.float64)
            if x.shape != y.shape or va.shape != x.shape or vb.shape != x.shape:
                continue
            if not (_whole(x) and _whole(y)) or (_whole(va) and _whole(vb)):
                continue  # only float devices' spikes (a readout's output is its voltage) can tie
            diff = (x != y).reshape(x.shape[0], -1)
            if not diff.any():
                continue
            close = np.isclose(va, vb, rtol=self.state_rtol, atol=self.state_atol).reshape(x.shape[0], -1)
            for i in np.flatnonzero(diff.any(axis=1)):
                sample = offset + int(i)
                if sample in pair.tied_samples or not close[i][diff[i]].all():
                    continue
                j = int(np.flatnonzero(diff[i])[0])
                pair.tied_samples.add(sample)
                pair.ties.append(Mismatch(key, t, sample, int(diff[i].sum()),
                                          float(abs(va.reshape(x.shape[0], -1)[i, j]
                                                    - vb.reshape(x.shape[0], -1)[i, j]))))

    def _compare_step(self, pair: PairResult, ra: dict[str, np.ndarray], rb: dict[str, np.ndarray],
                      t: int, offset: int) -> None:
        if pair.identity:
            self._find_ties(pair, ra, rb, t, offset)
        for key in sorted(ra.keys() & rb.keys()):
            x, y = np.asarray(ra[key]), np.asarray(rb[key])
            if x.shape != y.shape:
                if x.size == y.size:
                    y = y.reshape(x.shape)
                else:
                    continue  # different layouts of one layer: nothing to compare element-wise
            pair.keys.add(key)
            if _exact(x, y):
                diff = x != y
            else:
                diff = ~np.isclose(x, y, rtol=self.state_rtol, atol=self.state_atol)
            if pair.tied_samples:
                tied = [i for i in range(diff.shape[0]) if offset + i in pair.tied_samples]
                diff = diff.copy()
                diff[tied] = False  # a tied sample's trajectories legitimately part from here
                pair.compared += diff.size - diff[tied].size
            else:
                pair.compared += diff.size
            n_diff = int(diff.sum())
            if not n_diff:
                continue
            pair.differing += n_diff
            if not pair.identity:
                continue
            per_sample = diff.reshape(diff.shape[0], -1).sum(axis=1)
            absdiff = np.abs(x.astype(np.float64) - y.astype(np.float64)).reshape(diff.shape[0], -1)
            for i in np.flatnonzero(per_sample):
                pair.mismatched_samples.add(offset + int(i))
                self._report(pair, Mismatch(key, t, offset + int(i), int(per_sample[i]), float(absdiff[i].max())))

    def accuracy(self, name: str) -> float:
        return self.correct[name] / self.labelled if self.labelled else float("nan")

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pairs.values())


# --------------------------------------------------------------------------- timing (bench)

@dataclass(frozen=True)
class StepTimes:
    """Seconds per ``step`` call: ``wall`` (wall clock) and ``cpu`` (CPU time of the calling
    thread; with one compute thread, what the step costs on a dedicated core, whatever else
    the machine runs)."""

    wall: np.ndarray
    cpu: np.ndarray


def time_steps(device: Device, batch: int, steps: int, warmup: int = 10, density: float = 0.1,
               seed: int = 0) -> StepTimes:
    """Time each of ``steps`` calls to ``device.step`` on a ``batch`` of random binary frames
    (``density`` = fraction of active pixels), after ``warmup`` untimed steps."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps={steps} and batch={batch} must be >= 1")
    rng = np.random.default_rng(seed)
    frames = (rng.random((min(steps + warmup, 64), batch, *device.input_shape)) < density).astype(np.float32)
    device.reset(batch)
    for i in range(warmup):
        device.step(frames[i % len(frames)])
    wall, cpu = np.empty(steps), np.empty(steps)
    for i in range(steps):
        frame = frames[(warmup + i) % len(frames)]
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        device.step(frame)
        wall[i] = (time.perf_counter_ns() - t0) * 1e-9
        cpu[i] = (time.thread_time_ns() - c0) * 1e-9
    return StepTimes(wall, cpu)
