"""Where a simulated edge learns of scene changes.

The live edge runs the change-point detector on its own feature stream. The benchmark can run
that same detector (`detector`) or, as an upper bound for any detector, the drift schedule's own
segment boundaries (`oracle`), so the effect of detection errors can be separated from the
effect of acting on a scene change at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgesync.changepoint import SceneWatcher
from edgesync.config import ChangePointConfig
from edgesync.drift import DriftSchedule
from edgesync.student import Prediction


@dataclass(frozen=True)
class Noticed:
    """A scene change as the edge reports it (stream times; signatures as in edgesync.types.SceneChange)."""

    t_s: float
    previous_signature: tuple[float, ...] = ()
    signature: tuple[float, ...] = ()
    confidence: float = 1.0


class SceneChanges(Protocol):
    """Fed every frame in order; returns a scene change when it notices one."""

    def update(self, t_s: float, prediction: Prediction, frame: Callable[[], np.ndarray]) -> Noticed | None: ...


class OracleChanges:
    """The schedule's segment boundaries, reported delay_s after each (an upper bound for detection)."""

    def __init__(self, schedule: DriftSchedule, delay_s: float = 0.0) -> None:
        self._pending = list(schedule.boundaries()[1:])
        self.delay_s = delay_s

    def update(self, t_s: float, prediction: Prediction, frame: Callable[[], np.ndarray]) -> Noticed | None:
        fired = None
        while self._pending and t_s >= self._pending[0] + self.delay_s:
            fired = Noticed(self._pending.pop(0) + self.delay_s)
        return fired


class DetectorChanges:
    """The edge's own change-point detector (SceneWatcher, exactly what the live edge runs)."""

    def __init__(self, cfg: ChangePointConfig) -> None:
        self.watcher = SceneWatcher(cfg)

    def update(self, t_s: float, prediction: Prediction, frame: Callable[[], np.ndarray]) -> Noticed | None:
        if not self.watcher.due(t_s):
            return None  # skip building the drifted frame
        point = self.watcher.watch(t_s, frame(), prediction.scores)
        if point is None:
            return None
        return Noticed(point.t_s, point.previous_signature, point.signature, point.confidence)

    def model_swapped(self) -> None:
        self.watcher.model_swapped()
