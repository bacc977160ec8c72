"""Exponential backoff with jitter, for reconnect loops."""

from __future__ import annotations

import random
import threading

from edgesync.config import RetryConfig


class Backoff:
    """Delays that grow from initial_s to max_s; reset() after a success."""

    def __init__(self, cfg: RetryConfig, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.delay = cfg.initial_s

    def reset(self) -> None:
        self.delay = self.cfg.initial_s

    def next_delay(self) -> float:
        delay = self.delay * (0.5 + self.rng.random() / 2)
        self.delay = min(self.delay * self.cfg.multiplier, self.cfg.max_s)
        return delay

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay unless stop is set first; True when stopped."""
        return stop.wait(self.next_delay())
