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

    The listener thread loads and warms the new model, then stages it with offer(); the frame
    loop calls swap_if_ready() between two frames, which is a reference assignment, so no frame
    waits for loading. The previous model is kept for rollback.

    Models no frame will use again (the one two swaps back, a rolled-back one, a staged one
    overtaken by a newer) become spares: the listener loads the next update's weights into one
    (StudentModel.from_bytes) instead of building a model beside the frame loop. stock_spares()
    builds them at start, before any is retired: two, since the current and the previous model
    are both kept until the second swap retires the first.
    """

    def __init__(self, model: StudentModel) -> None:
        self.current = model
        self.previous: StudentModel | None = None
        self._staged: tuple[StudentModel, float, int, float] | None = None
        self._spares: list[StudentModel] = []
        self._lock = threading.Lock()
        self.refused: set[int] = set()  # versions rolled back: never swapped in again

    def stock_spares(self, count: int) -> None:
        """Build and warm copies of the current model until count spares are kept (slow: call at start)."""
        while len(self._spares) < count:
            spare = self.current.copy()
            spare.warmup()
            self.keep_spare(spare)

    def take_spare(self) -> StudentModel | None:
        """A model no frame uses any more, now the caller's to load weights into; None if there is none."""
        with self._lock:
            return self._spares.pop() if self._spares else None

    def keep_spare(self, model: StudentModel) -> None:
        """Keep model, which no frame uses (a model swapped out, or a spare take_spare handed out and
        the caller did not use), for take_spare to hand out."""
        with self._lock:
            self._spares.append(model)

    @property
    def version(self) -> int:
        return self.current.version

    def predict(self, image: np.ndarray, views: dict[str, np.ndarray] | None = None) -> Prediction:
        """The current model's prediction on image. views: the image already preprocessed, by
        preprocessing mode; the current model's is used when there (else it preprocesses itself)."""
        model = self.current
        view = views.get(model.preprocess) if views else None
        return model.predict([image], seen=None if view is None else [view])[0]

    def offer(
        self, model: StudentModel, trained_until: float = 0.0, size_bytes: int = 0, scene_start: float = 0.0
    ) -> None:
        """Stage a ready (loaded, warmed) model; the frame loop swaps it in at the next frame boundary."""
        with self._lock:
            overtaken, self._staged = self._staged, (model, trained_until, size_bytes, scene_start)
        if overtaken is not None:
            self.keep_spare(overtaken[0])

    def swap_if_ready(self) -> SwapEvent | None:
        """Install the staged model if there is one (call between frames)."""
        if self._staged is None:
            return None
        with self._lock:
            staged, self._staged = self._staged, None
        if staged is None:
            return None
        model, since, size, scene_start = staged
        if model.version in self.refused or model.version <= self.current.version:
            why = "it was rolled back" if model.version in self.refused else f"already running v{self.current.version}"
            log.info("ignoring staged v%d: %s", model.version, why)
            self.keep_spare(model)
            return None
        retired, self.previous, self.current = self.previous, self.current, model
        if retired is not None:
            self.keep_spare(retired)
        now = time.time()
        event = SwapEvent(model.version, self.previous.version, now, now - since if since else 0.0, size, scene_start)
        log.info("swapped in model v%d (was v%d)", model.version, self.previous.version)
        return event

    def rollback(self) -> int:
        """Go back to the previous model, refusing the current one from now on; returns the version now running."""
        if self.previous is not None:
            self.refused.add(self.current.version)
            log.warning("rolling back from v%d to v%d", self.current.version, self.previous.version)
            refused, self.current, self.previous = self.current, self.previous, None
            self.keep_spare(refused)
        return self.current.version
