"""Where a simulated edge learns of scene changes.

The live edge runs the change-point detector on its own feature stream. The benchmark can run
that same detector (`detector`) or, as an upper bound for any detector, the drift schedule's own
segment boundaries (`oracle`), so the effect of detection errors can be separated from the
effect of acting on a scene change at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgesync.drift import DriftSchedule
from edgesync.student import Prediction


class SceneChanges(Protocol):
    """Fed every frame in order; returns the stream time of a scene change when it notices one."""

    def update(self, t_s: float, prediction: Prediction, frame: Callable[[], np.ndarray]) -> float | None: ...


class OracleChanges:
    """The schedule's segment boundaries, reported delay_s after each (an upper bound for detection)."""

    def __init__(self, schedule: DriftSchedule, delay_s: float = 0.0) -> None:
        self._pending = list(schedule.boundaries()[1:])
        self.delay_s = delay_s

    def update(self, t_s: float, prediction: Prediction, frame: Callable[[], np.ndarray]) -> float | None:
        fired = None
        while self._pending and t_s >= self._pending[0] + self.delay_s:
            fired = self._pending.pop(0) + self.delay_s
        return fired
