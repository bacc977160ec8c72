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


def encode_jpeg(frame: np.ndarray, quality: int, max_side: int) -> Encoded:
    """JPEG of frame, downscaled (never upscaled) so its longest side is at most max_side."""
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidInput(f"could not JPEG-encode a frame of shape {frame.shape}")
    out_h, out_w = frame.shape[:2]
    return Encoded(buf.tobytes(), out_w, out_h, out_w / width)


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
    max_bytes bytes.

    Stronger than a token bucket (which lets up to two windows' worth through one interval):
    unused budget never carries over, and the cap holds for every interval, not only aligned
    ones. Proof: when admitting at t, every earlier release inside (t - window_s, t] is counted,
    and release times never decrease (a time earlier than the last is moved up to it).
    """

    def __init__(self, window_s: float, max_count: int, max_bytes: float) -> None:
        self.window_s = window_s
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._log: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._last_s = -math.inf

    @classmethod
    def from_config(cls, cfg: SamplerConfig) -> UploadBudget:
        count, nbytes = window_budget(cfg)
        return cls(cfg.window_s, count, nbytes)

    def _advance(self, now_s: float) -> float:
        now_s = max(now_s, self._last_s)
        while self._log and now_s - self._log[0][0] >= self.window_s:
            self._bytes -= self._log.popleft()[1]
        return now_s

    def fits(self, now_s: float, nbytes: int) -> bool:
        """Whether one more release of nbytes at now_s stays within the budget."""
        now_s = self._advance(now_s)
        return len(self._log) < self.max_count and self._bytes + nbytes <= self.max_bytes

    def take(self, now_s: float, nbytes: int) -> float | None:
        """Record a release if it fits; returns its (monotonic) release time, or None if refused."""
        if not self.fits(now_s, nbytes):
            return None
        now_s = self._last_s = max(now_s, self._last_s)
        self._log.append((now_s, nbytes))
        self._bytes += nbytes
        return now_s
