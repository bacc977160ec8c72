"""Hierarchical change-point detection on the edge's per-frame embedding, without labels.

The embedding of each frame is cheap image statistics (colour, brightness histogram, contrast,
sharpness) plus the detector's confidence distribution, which the edge has anyway. Colour and
brightness are read off a thumbnail; sharpness off the frame at its own resolution, where a
defocused lens or a noisy sensor shows (a thumbnail averages both away). It is
summarised at three time scales, exponential averages in time (not frames, so the frame rate
does not matter): fast (seconds), medium (tens of seconds) and slow (minutes). Each level
changes at its own rate; a change-point is where the slow level's picture of the scene no
longer holds.

Test: the fast level's distance from the slow level, per dimension in units of its own
recent variation (the running spread of fast around slow while the scene is stable), summed
over dimensions. Under a stable scene that sum behaves like a chi-square variable with one
degree of freedom per dimension, so the threshold comes from a false-alarm probability per
independent look (one per fast time constant), not from tuning. A change-point fires when the
statistic stays above it for a fast time constant.

After firing, the detector waits for the new scene to settle (fast and medium levels agree
again, by the same test) before it re-anchors the slow level and looks for the next change,
so a gradual drift (dusk falling over 20 s) is one change-point, not several. A replayed video
jumping back to its start shows the same scene: the fast level barely moves and nothing fires.

A model swap changes the confidence statistics, never the image: those dimensions sit out of the
test for a few fast time constants and are re-anchored on the new model's picture, while the
image statistics keep their history, so a scene change that coincides with a swap still fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgesync.config import ChangePointConfig

THUMB = (64, 48)  # frames are summarised at this size: colour and brightness need no detail
SHARPNESS_CROP = (640, 480)  # sharpness is measured at native resolution on at most this centre crop
HIST_BINS = 8
IMAGE_DIMS = 6 + HIST_BINS + 2  # channel means and spreads, luma histogram, saturation, sharpness
MODEL_DIMS = slice(IMAGE_DIMS, None)  # the confidence statistics: they change with the model
SWAP_SETTLE_TAUS = 3.0  # fast time constants a re-anchored dimension sits out (95% new weight)
EPS = 1e-6


def image_statistics(frame: np.ndarray) -> np.ndarray:
    """Model-independent summary of a BGR (or grey) frame, values of order 1."""
    small = cv2.resize(frame, THUMB, interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    elif small.shape[2] == 4:
        small = cv2.cvtColor(small, cv2.COLOR_BGRA2BGR)
    pixels = small.reshape(-1, 3).astype(np.float32) / 255.0
    means, spreads = pixels.mean(axis=0), pixels.std(axis=0)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    hist = np.bincount((grey.ravel().astype(np.int32) * HIST_BINS) // 256, minlength=HIST_BINS) / grey.size
    saturation = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[..., 1].mean() / 255.0
    return np.concatenate([means, spreads, hist, [saturation, sharpness(frame) / 5.0]]).astype(np.float64)


def sharpness(frame: np.ndarray) -> float:
    """log(1 + variance of the Laplacian) at the frame's own pixel scale: blur lowers it, sensor
    noise raises it. Both cover the whole frame, so a centre crop shows them and bounds the cost on
    large frames. Expects 8-bit frames, as decoded."""
    h, w = frame.shape[:2]
    cw, ch = min(w, SHARPNESS_CROP[0]), min(h, SHARPNESS_CROP[1])
    crop = frame[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGRA2GRAY if crop.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    _, spread = cv2.meanStdDev(cv2.Laplacian(crop, cv2.CV_16S))  # exact for 8-bit input, 3x faster than float
    return math.log1p(float(spread[0, 0]) ** 2)


def confidence_statistics(scores: np.ndarray) -> np.ndarray:
    """The detector's confidence distribution on a frame: how many boxes, and how sure."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(2)
    return np.array([math.log1p(scores.size), float(scores.mean())])


def frame_embedding(frame: np.ndarray, scores: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
    """Image statistics followed by the confidence statistics (the first IMAGE_DIMS values are
    independent of the model, so they can sign a scene for the model zoo). statistics: the
    frame's image_statistics, if already computed."""
    image = image_statistics(frame) if statistics is None else statistics
    return np.concatenate([image, confidence_statistics(scores)])


def chi2_quantile(p_exceed: float, dof: int) -> float:
    """Approximate upper quantile of a chi-square distribution (Wilson-Hilferty)."""
    z = _normal_upper_quantile(p_exceed)
    k = 2.0 / (9.0 * dof)
    return dof * (1.0 - k + z * math.sqrt(k)) ** 3


def _normal_upper_quantile(p: float) -> float:
    """z with P(N(0,1) > z) = p, by bisection on erfc (no SciPy needed)."""
    lo, hi = -10.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class ChangePoint:
    """A detected scene change."""

    t_s: float  # stream time the detector fired
    statistic: float  # the test statistic when it fired, in units of the threshold (>= 1)
    previous_signature: tuple[float, ...]  # image statistics of the scene that ended (slow level)
    signature: tuple[float, ...]  # image statistics of the new scene (fast level)

    @property
    def confidence(self) -> float:
        """In [0, 1): how far past the threshold the statistic went."""
        return 1.0 - 1.0 / self.statistic


class _Level:
    """An exponential average in time of the embedding."""

    def __init__(self, tau_s: float) -> None:
        self.tau_s = tau_s
        self.mean: np.ndarray | None = None

    def update(self, x: np.ndarray, dt: float) -> None:
        if self.mean is None:
            self.mean = x.copy()
        else:
            self.mean += (1.0 - math.exp(-dt / self.tau_s)) * (x - self.mean)


class ChangePointDetector:
    """Feed update() every frame in order; it returns a ChangePoint when the scene changes."""

    def __init__(self, cfg: ChangePointConfig) -> None:
        self.cfg = cfg
        self.fast = _Level(cfg.fast_s)
        self.medium = _Level(cfg.medium_s)
        self.slow = _Level(cfg.slow_s)
        self._spread: np.ndarray | None = None  # running mean square of (fast - slow), per dimension
        self._started: float | None = None
        self._last_t: float | None = None
        self._above_since: float | None = None
        self._settling = False
        self._settled_since: float | None = None
        self.threshold = 1.0
        self.statistic = 0.0  # the latest test statistic in units of the threshold
        self._reanchor: tuple[slice, float | None] | None = None  # dimensions, and when to re-anchor them

    def _threshold(self, dims: int) -> float:
        p = min(0.5, self.cfg.false_alarms_per_hour * self.cfg.fast_s / 3600.0)
        return chi2_quantile(p, dims)

    def _tested(self, size: int) -> np.ndarray:
        """Per dimension: part of the test (all but those waiting to be re-anchored)."""
        tested = np.ones(size, dtype=bool)
        if self._reanchor is not None:
            tested[self._reanchor[0]] = False
        return tested

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        assert self._spread is not None
        return float(np.sum(((a - b) ** 2 / (self._spread + EPS))[self._tested(a.size)]))

    def update(self, t_s: float, embedding: np.ndarray) -> ChangePoint | None:
        x = np.asarray(embedding, dtype=np.float64)
        dt = 0.0 if self._last_t is None else max(0.0, t_s - self._last_t)
        self._last_t = t_s
        if self._started is None:
            self._started = t_s
            self.threshold = self._threshold(x.size)
        for level in (self.fast, self.medium, self.slow):
            level.update(x, dt)
        fast, medium, slow = self.fast.mean, self.medium.mean, self.slow.mean
        assert fast is not None and medium is not None and slow is not None
        if self._spread is None:
            self._spread = np.full_like(x, EPS)
        if self._reanchor is not None:
            self._reanchor_dims(t_s)
        if self._settling:
            return self._settle(t_s, fast, medium)
        warm = t_s - self._started >= self.cfg.warmup_s
        self.statistic = self._distance(fast, slow) / self.threshold if warm else 0.0
        if self.statistic <= 1.0:
            self._above_since = None
            # the spread is learnt on the stable scene only, at the slow level's pace
            rate = 1.0 - math.exp(-dt / self.cfg.slow_s) if self._spread.any() else 1.0
            spread = np.maximum(self._spread + rate * ((fast - slow) ** 2 - self._spread), self.cfg.min_spread**2)
            self._spread = np.where(self._tested(x.size), spread, self._spread)
            return None
        if self._above_since is None:
            self._above_since = t_s
        if t_s - self._above_since < self.cfg.confirm_s:
            return None
        point = ChangePoint(
            t_s=t_s,
            statistic=self.statistic,
            previous_signature=tuple(float(v) for v in slow[:IMAGE_DIMS]),
            signature=tuple(float(v) for v in fast[:IMAGE_DIMS]),
        )
        self._settling, self._settled_since, self._above_since = True, None, None
        return point

    def _settle(self, t_s: float, fast: np.ndarray, medium: np.ndarray) -> None:
        """After a change: wait until fast and medium agree for a medium time constant, then re-anchor."""
        if self._distance(fast, medium) > self.threshold:
            self._settled_since = None
            return None
        if self._settled_since is None:
            self._settled_since = t_s
        if t_s - self._settled_since >= self.cfg.fast_s:
            assert self.slow.mean is not None and self.medium.mean is not None
            self.slow.mean = fast.copy()
            self.medium.mean = fast.copy()
            self._settling = False
        return None

    def reanchor(self, dims: slice) -> None:
        """Accept a new picture in these dimensions (e.g. the confidence statistics after a model
        swap): they leave the test now and, once the fast level has had SWAP_SETTLE_TAUS time
        constants to learn them, all three levels start from it. The other dimensions go on."""
        self._reanchor = (dims, None)

    def _reanchor_dims(self, t_s: float) -> None:
        assert self._reanchor is not None
        dims, due = self._reanchor
        if due is None:  # the first look since reanchor(): its own frame starts the clock
            self._reanchor = (dims, t_s + SWAP_SETTLE_TAUS * self.cfg.fast_s)
            return
        if t_s < due:
            return
        assert self.fast.mean is not None and self.medium.mean is not None and self.slow.mean is not None
        self.slow.mean[dims] = self.fast.mean[dims]
        self.medium.mean[dims] = self.fast.mean[dims]
        self._reanchor = None


class Cadence:
    """At most hz frames a second of stream time: the first frame, then the first at or after each
    due time. Two cadences shown the same frame times pick the same frames."""

    def __init__(self, hz: float) -> None:
        self.period_s = 1.0 / hz
        self._next_s: float | None = None

    def due(self, t_s: float) -> bool:
        """Whether the frame at t_s would be taken."""
        return self._next_s is None or t_s >= self._next_s

    def take(self, t_s: float) -> bool:
        """Whether the frame at t_s is taken; if so, the next is due a period later."""
        if not self.due(t_s):
            return False
        self._next_s = t_s + self.period_s if self._next_s is None else max(self._next_s + self.period_s, t_s)
        return True


class SceneWatcher:
    """What the edge runs per frame: the embedding and the detector, at most sample_hz times a
    second of stream time (the time constants are seconds; every frame would cost the loop ~5%)."""

    def __init__(self, cfg: ChangePointConfig) -> None:
        self.detector = ChangePointDetector(cfg)
        self.cadence = Cadence(cfg.sample_hz)

    def due(self, t_s: float) -> bool:
        """Whether the frame at t_s will be looked at (callers can skip preparing it otherwise)."""
        return self.cadence.due(t_s)

    def watch(
        self, t_s: float, frame: np.ndarray, scores: np.ndarray, statistics: np.ndarray | None = None
    ) -> ChangePoint | None:
        """Look at the frame at t_s if it is due. statistics: its image_statistics, if already
        computed (the edge computes them ahead of its loop)."""
        if not self.cadence.take(t_s):
            return None
        return self.detector.update(t_s, frame_embedding(frame, scores, statistics))

    def model_swapped(self) -> None:
        """A new model changes the confidence statistics, not the scene."""
        self.detector.reanchor(MODEL_DIMS)
