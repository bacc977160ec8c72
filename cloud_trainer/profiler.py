"""How long to train a job: its held-out learning curve, watched epoch by epoch.

After every epoch the worker scores the weights training would end with on the job's held-out
frames (fresh, teacher-labelled, never trained on). From the curve so far the profiler

- predicts the gain the job will have reached at its planned number of epochs from the last
  two improvements of the curve. Two shrinking improvements fit a saturating curve: each
  further epoch adds the same fraction r = last / previous of the one before (the geometric
  form of an exponential approach to a plateau). Two steady or growing ones extrapolate
  linearly. One improvement after none is no trend yet: the gain reached so far is the
  prediction, and a curve that has stopped improving predicts the best gain it reached;
- optionally (`training.patience` > 0) stops the job once the held-out mAP50 has not improved
  for `patience` epochs, handing the rest of the budget to the next job. The weights of the
  last epoch are kept, not the best epoch's, so the held-out frames that decide acceptance
  were not also used to pick the model.

The held-out sets are small (4-16 frames), so single epochs move the curve in steps: on the
live demo one extrapolated step predicted +69 points where the job achieved -5. That is why an
isolated step is not extrapolated, and why early stopping is off by default until the
benchmark shows it pays.

The prediction made after the second epoch is the job's `predicted_gain`; the worker records
the achieved gain beside it, so the profiler's error is visible per job (API, logs, bench).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROBE_EPOCHS = 2  # points the first prediction needs


@dataclass
class LearningCurve:
    """Held-out mAP50 before training and after each epoch of one job."""

    before: float
    planned: int  # epochs the job intends to run in all
    patience: int  # epochs without improvement before stopping (0: never stop early)
    points: list[float] = field(default_factory=list)
    first_prediction: float | None = None  # made once PROBE_EPOCHS points are in

    def add(self, score: float) -> None:
        self.points.append(score)
        if self.first_prediction is None and len(self.points) >= PROBE_EPOCHS:
            self.first_prediction = self.predicted_gain()

    def predicted_gain(self) -> float | None:
        """Predicted held-out gain over `before` at the planned epoch, or None before two points."""
        if len(self.points) < PROBE_EPOCHS:
            return None
        scores = [self.before, *self.points]
        last = scores[-1] - scores[-2]
        previous = scores[-2] - scores[-3]
        remaining = max(0, self.planned - len(self.points))
        reached = scores[-1] - self.before
        if last <= 0:  # stopped improving: the best it reached
            return max(self.points) - self.before
        if previous <= 0 or remaining == 0:  # one step is no trend
            return reached
        if last < previous:  # shrinking improvements: a geometric series with ratio r
            r = last / previous
            more = last * r * (1 - r**remaining) / (1 - r)
        else:  # steady or growing: the trend, linearly
            more = last * remaining
        return min(reached + more, 1.0 - self.before)

    def stop_reason(self) -> str | None:
        """Why training should stop now, or None to go on."""
        if not self.patience or len(self.points) < PROBE_EPOCHS:
            return None
        best = max(range(len(self.points)), key=lambda i: (self.points[i], -i))
        best_score = max(self.before, self.points[best])
        since = len(self.points) - 1 - best if self.points[best] > self.before else len(self.points)
        if since >= self.patience and self.points[-1] <= best_score:
            return f"held-out mAP50 has not improved for {since} epochs (best {best_score:.3f})"
        return None
