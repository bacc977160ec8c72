"""The edge's detector with hot swap: new weights are prepared elsewhere and swapped in between frames."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from edgesync.student import Prediction, StudentModel

log = logging.getLogger(__name__)


@dataclass
class SwapEvent:
    """A model that went live on the edge."""

    version: int
    previous_version: int
    swapped_at: float  # wall clock
    update_delay_s: float  # swap time minus the arrival of the data it was trained on
    bytes: int
    scene_start: float = 0.0  # capture clock of the scene the model was chosen for (0: none in particular)


class HotSwapDetector:
    """Serves predictions from the current model; swap_if_ready() installs a staged one.

    The listener thread builds and warms the new model, then stages it with offer(); the frame
    loop calls swap_if_ready() between two frames, which is a reference assignment, so no frame
    waits for loading. The previous model is kept for rollback.
    """

    def __init__(self, model: StudentModel) -> None:
        self.current = model
        self.previous: StudentModel | None = None
        self._staged: tuple[StudentModel, float, int, float] | None = None
        self._lock = threading.Lock()
        self.refused: set[int] = set()  # versions rolled back: never swapped in again

    @property
    def version(self) -> int:
        return self.current.version

    def predict(self, image: np.ndarray) -> Prediction:
        return self.current.predict([image])[0]

    def offer(
        self, model: StudentModel, trained_until: float = 0.0, size_bytes: int = 0, scene_start: float = 0.0
    ) -> None:
        """Stage a ready (loaded, warmed) model; the frame loop swaps it in at the next frame boundary."""
        with self._lock:
            self._staged = (model, trained_until, size_bytes, scene_start)

    def swap_if_ready(self) -> SwapEvent | None:
        """Install the staged model if there is one (call between frames)."""
        if self._staged is None:
            return None
        with self._lock:
            staged, self._staged = self._staged, None
        if staged is None:
            return None
        model, since, size, scene_start = staged
        if model.version in self.refused:
            log.info("ignoring staged v%d: it was rolled back", model.version)
            return None
        if model.version <= self.current.version:
            log.info("ignoring staged v%d: already running v%d", model.version, self.current.version)
            return None
        self.previous, self.current = self.current, model
        now = time.time()
        event = SwapEvent(model.version, self.previous.version, now, now - since if since else 0.0, size, scene_start)
        log.info("swapped in model v%d (was v%d)", model.version, self.previous.version)
        return event

    def rollback(self) -> int:
        """Go back to the previous model, refusing the current one from now on; returns the version now running."""
        if self.previous is not None:
            self.refused.add(self.current.version)
            log.warning("rolling back from v%d to v%d", self.current.version, self.previous.version)
            self.current, self.previous = self.previous, None
        return self.current.version
