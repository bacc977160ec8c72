"""What an upload costs: the frame as a (downscaled) JPEG, and the sliding-window upload budget."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import NamedTuple

import cv2
import numpy as np

from edgesync.config import SamplerConfig
from edgesync.errors import InvalidInput

log = logging.getLogger(__name__)


class Encoded(NamedTuple):
    jpeg: bytes
    width: int
    height: int
    scale: float


def downscaled(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """frame shrunk (never enlarged) so its longest side is at most max_side, and the scale (new
    width / old width); frame itself when it already fits."""
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame, frame.shape[1] / width


def encode_jpeg(frame: np.ndarray, quality: int, max_side: int) -> Encoded:
    """JPEG of frame, downscaled (never upscaled) so its longest side is at most max_side."""
    frame, scale = downscaled(frame, max_side)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidInput(f"could not JPEG-encode a frame of shape {frame.shape}")
    out_h, out_w = frame.shape[:2]
    return Encoded(buf.tobytes(), out_w, out_h, scale)


def check_frame(frame: np.ndarray) -> None:
    """Raise InvalidInput unless frame is a non-empty uint8 grey, BGR or BGRA image."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
        raise InvalidInput(
            f"frame must be a non-empty uint8 numpy array, got {type(frame).__name__} {getattr(frame, 'dtype', '')}"
        )
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
        raise InvalidInput(f"frame must be HxW or HxWxC (C in 1, 3, 4), got shape {frame.shape}")


def window_budget(cfg: SamplerConfig) -> tuple[int, float]:
    """(samples, bytes) allowed in any window_s interval: floor(rate x window), at least 1 sample."""
    return max(1, math.floor(cfg.max_samples_per_s * cfg.window_s)), cfg.max_bytes_per_s * cfg.window_s


class UploadBudget:
    """Sliding-window cap: in every interval (t - window_s, t] at most max_count releases and
    max_bytes bytes, with an optional burst that is paid back.

    Stronger than a token bucket (which lets up to two windows' worth through one interval):
    unused budget never carries over, and the cap holds for every interval, not only aligned
    ones. Proof: when admitting at t, every earlier release inside (t - window_s, t] is counted,
    and release times never decrease (a time earlier than the last is moved up to it).

    burst() raises the caps by a factor for a while (after a scene change the first frames of
    the new scene are worth the most). What a burst takes beyond the nominal rate is borrowed
    from what follows: a token bucket at the nominal rate (one window's worth deep, starting
    full) runs beside the window and may go into debt only during a burst; after it, releases
    wait until the debt is repaid. Any sequence the sliding window admits, the bucket admits too
    (N(s, t] <= max_count x ceil((t - s) / window_s) <= max_count + rate x (t - s)), so outside
    bursts and their pay-back the bucket changes nothing, and over any interval the total stays
    within one window's worth plus the largest debt of the nominal rate.
    """

    EPS = 1e-9  # float slack, so the bucket never refuses what the window admits

    def __init__(self, window_s: float, max_count: int, max_bytes: float) -> None:
        self.window_s = window_s
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._log: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._last_s = -math.inf
        # the bucket: (count, bytes) of nominal allowance available, refilled at the nominal rate
        self._tokens = [float(max_count), float(max_bytes)]
        self._tokens_at = -math.inf
        self._burst: tuple[float, float, float] | None = None  # (start_s, end_s, factor)

    @classmethod
    def from_config(cls, cfg: SamplerConfig) -> UploadBudget:
        count, nbytes = window_budget(cfg)
        return cls(cfg.window_s, count, nbytes)

    def burst(self, start_s: float, end_s: float, factor: float) -> None:
        """From start_s to end_s (inclusive) allow factor x the caps, borrowing the excess from
        what follows (the bucket may fall to (factor - 1) x the nominal allowance of the burst)."""
        if factor > 1.0 and end_s > start_s:
            self._burst = (start_s, end_s, factor)

    def factor_at(self, now_s: float) -> float:
        """The caps' multiplier at now_s: the burst's factor during a burst, else 1."""
        if self._burst is not None and self._burst[0] <= now_s <= self._burst[1] + self.EPS:
            return self._burst[2]
        return 1.0

    def _advance(self, now_s: float) -> float:
        now_s = max(now_s, self._last_s)
        while self._log and now_s - self._log[0][0] >= self.window_s:
            self._bytes -= self._log.popleft()[1]
        if self._tokens_at > -math.inf:
            refill = (now_s - self._tokens_at) / self.window_s
            self._tokens = [
                min(float(self.max_count), self._tokens[0] + refill * self.max_count),
                min(float(self.max_bytes), self._tokens[1] + refill * self.max_bytes),
            ]
        self._tokens_at = now_s
        return now_s

    def fits(self, now_s: float, nbytes: int) -> bool:
        """Whether one more release of nbytes at now_s stays within the budget."""
        now_s = self._advance(now_s)
        factor = self.factor_at(now_s)
        if (
            len(self._log) >= math.floor(factor * self.max_count + self.EPS)
            or self._bytes + nbytes > factor * self.max_bytes
        ):
            return False
        debt = 0.0
        if factor > 1.0:
            assert self._burst is not None
            debt = (factor - 1.0) * (self._burst[1] - self._burst[0]) / self.window_s
        return (
            self._tokens[0] - 1 >= -debt * self.max_count - self.EPS
            and self._tokens[1] - nbytes >= -debt * self.max_bytes - self.EPS
        )

    def take(self, now_s: float, nbytes: int) -> float | None:
        """Record a release if it fits; returns its (monotonic) release time, or None if refused."""
        if not self.fits(now_s, nbytes):
            return None
        now_s = self._last_s = max(now_s, self._last_s)
        self._log.append((now_s, nbytes))
        self._bytes += nbytes
        self._tokens[0] -= 1
        self._tokens[1] -= nbytes
        return now_s
