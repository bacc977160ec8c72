"""Rolling back a model that collapses on the edge's own frames.

The cloud validated a new model on held-out frames, but the edge sees every frame. After a swap
the guard compares the new model's mean detection confidence over its first `window_frames`
frames with the old model's over the frames just before the swap (the same scene, moments
apart). If it falls below `collapse_ratio` of that, the new model is finding next to nothing
where the old one found things: the edge goes back to the previous model and ignores that
version from then on (a newer one is welcome).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collapse:
    version: int  # the model rolled back
    before: float  # mean confidence of the previous model before the swap
    after: float  # of the new one since


class SwapGuard:
    """Fed each frame's mean detection confidence; says when the model swapped in last has collapsed."""

    def __init__(self, window_frames: int = 50, collapse_ratio: float = 0.5, min_confidence: float = 0.05) -> None:
        self.window_frames = window_frames
        self.collapse_ratio = collapse_ratio
        self.min_confidence = min_confidence  # below this before the swap there is nothing to lose
        self._recent: deque[float] = deque(maxlen=window_frames)
        self._baseline: float | None = None
        self._version = 0

    def swapped(self, version: int) -> None:
        """A new model went live: what the old one saw recently becomes the baseline."""
        full = len(self._recent) == self.window_frames
        self._baseline = sum(self._recent) / len(self._recent) if full else None
        self._version = version
        self._recent.clear()

    def observe(self, mean_confidence: float) -> Collapse | None:
        """One frame; a Collapse once the new model's first window falls short of the baseline."""
        self._recent.append(mean_confidence)
        if self._baseline is None or len(self._recent) < self.window_frames:
            return None
        baseline, self._baseline = self._baseline, None  # judged once per swap
        after = sum(self._recent) / len(self._recent)
        if baseline >= self.min_confidence and after < self.collapse_ratio * baseline:
            return Collapse(self._version, baseline, after)
        return None
