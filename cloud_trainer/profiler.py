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
  last epoch are kept, so the held-out frames that decide acceptance were not also used to
  pick the model, unless `training.keep` is "best" (the worker then keeps the best epoch's).

The held-out sets are small (4-16 frames), so single epochs move the curve in steps: on the
live demo one extrapolated step predicted +69 points where the job achieved -5. That is why an
isolated step is not extrapolated, and why early stopping is off by default until the
benchmark shows it pays.

The prediction made after the second epoch is the job's `predicted_gain`; the worker records
the achieved gain beside it, so the profiler's error is visible per job (API, logs, bench).

**Which setting** (Ekya-style micro-profiling, `training.candidates`): before a job commits its
budget, each candidate setting (learning rate, image size, frozen layers, frozen batch-norm
statistics) trains for `profile_epochs` on a `profile_fraction` subsample of the job's frames,
its held-out curve is extrapolated to the job's epochs as above (a subsample epoch is that
fraction of a full one), and the job runs the candidate with the best predicted gain per unit
of compute. The probes' work is charged to the job. `profile_candidates` decides what to probe
and on which frames; the caller runs each probe (the worker fine-tunes, the tests fake curves).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from edgesync.config import TrainingConfig, TrainingSetting
from edgesync.types import TrainingJob

log = logging.getLogger(__name__)
Frame = TypeVar("Frame")

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

    def gain_to_come(self) -> float | None:
        """The held-out gain predicted beyond the best epoch so far by the planned epoch (never
        below 0), or None before two points."""
        predicted = self.predicted_gain()
        if predicted is None:
            return None
        return max(0.0, predicted - (max(self.points) - self.before))

    def rising(self) -> bool:
        """Whether the latest epoch scored above the start and every earlier epoch."""
        return bool(self.points) and self.points[-1] > max([self.before, *self.points[:-1]])

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


def recipe(setting: TrainingSetting) -> tuple:
    """What a probe trains with: the setting without its name and epoch count (candidates that
    differ only in how long they train share one probe, read at their own epochs)."""
    return tuple(sorted(setting.model_dump(exclude={"name", "epochs"}, exclude_none=True).items()))


def relative_cost(cfg: TrainingConfig, setting: TrainingSetting) -> float:
    """Compute per image-epoch of a setting against cfg's own: the pixel count (image size squared).

    Frozen layers and batch-norm statistics are charged in full: they skip weight gradients but not
    the forward and backward passes through the layers after them, and the saving is unmeasured.
    """
    return ((setting.imgsz or cfg.imgsz) / cfg.imgsz) ** 2


def probe_images(cfg: TrainingConfig, images: int) -> int:
    """Images in one candidate's subsample of a job with `images` training images (at least 2)."""
    return min(images, max(2, math.ceil(images * cfg.profile_fraction)))


def profile_image_epochs(cfg: TrainingConfig, images: int) -> float:
    """The probes' work for a job of `images` training images, in image-epochs at cfg.imgsz
    (0 when there is nothing to choose from)."""
    if len(cfg.candidates) < 2:
        return 0.0
    per_probe = probe_images(cfg, images) * cfg.profile_epochs
    probed = {recipe(c): relative_cost(cfg, c) for c in cfg.candidates}  # one probe per recipe
    return sum(per_probe * cost for cost in probed.values())


def profile_evaluations(cfg: TrainingConfig) -> int:
    """Held-out scorings the probes of one job make: one per probe epoch of each recipe."""
    return len({recipe(c) for c in cfg.candidates}) * cfg.profile_epochs if len(cfg.candidates) > 1 else 0


@dataclass
class SettingProbe:
    """One candidate's probe: its held-out curve and what the profiler predicts from it."""

    setting: TrainingSetting
    before: float
    points: list[float]  # held-out mAP50 after each probe epoch (shared by candidates of one recipe)
    planned_epochs: int  # the job's epochs under this setting, in full passes over its frames
    images: int  # in the subsample
    job_images: int  # in the job
    pixel_cost: float  # relative_cost: compute per image-epoch against the configured setting
    job_epochs: int = 0  # the configured setting's epochs (0: planned_epochs), for the job's cost
    probed: bool = True  # this candidate's probe ran (False: it reads another candidate's points)

    @property
    def fraction(self) -> float:
        return self.images / max(1, self.job_images)

    @property
    def cost(self) -> float:
        """The job's compute under this setting against the configured setting's."""
        return self.pixel_cost * self.planned_epochs / (self.job_epochs or self.planned_epochs)

    @property
    def image_epochs(self) -> float:
        """The probe's work in image-epochs at the configured image size (0 for a shared probe)."""
        return self.images * len(self.points) * self.pixel_cost if self.probed else 0.0

    @property
    def predicted_gain(self) -> float:
        """Held-out gain predicted at the job's planned epochs (a probe epoch is `fraction` of one)."""
        if not self.points:
            return 0.0
        planned = max(len(self.points), round(self.planned_epochs / self.fraction))
        curve = LearningCurve(self.before, planned, patience=0)
        for point in self.points:
            curve.add(point)
        predicted = curve.predicted_gain()
        return self.points[-1] - self.before if predicted is None else predicted

    @property
    def gain_per_compute(self) -> float:
        return self.predicted_gain / self.cost


def choose_setting(probes: list[SettingProbe]) -> SettingProbe:
    """The probe with the best predicted gain per compute; the first (the configured setting) on a
    tie or when none predicts a gain."""
    best = max(probes, key=lambda p: (p.gain_per_compute, -probes.index(p)))
    return best if best.predicted_gain > 0 else probes[0]


# runs one probe: (the candidate's training config, the subsample, epochs) -> held-out mAP50 after
# each epoch
ProbeRunner = Callable[[TrainingConfig, list[Frame], int], list[float]]


def profile_candidates(
    cfg: TrainingConfig,
    frames: Sequence[Frame],
    before: float,
    planned_epochs: int,
    run_probe: ProbeRunner,
    key: str,
) -> list[SettingProbe]:
    """One probe per candidate of `cfg.candidates`, in their order: each distinct recipe trains for
    `profile_epochs` on the same `profile_fraction` subsample of `frames` (drawn from `key`, so a
    resumed or repeated job draws the same); candidates that differ only in epochs share a probe.
    Probes run without distillation, to stay cheap. planned_epochs: the job's epochs under the
    configured setting, which caps each candidate's."""
    n = probe_images(cfg, len(frames))
    subsample = random.Random(f"{key}/profile").sample(list(frames), n)
    curves: dict[tuple, list[float]] = {}
    probes = []
    for setting in cfg.candidates:
        trains_with = recipe(setting)
        probed = trains_with not in curves
        if probed:
            probe_cfg = cfg.with_setting(setting)
            probe_cfg = probe_cfg.model_copy(update={"distill": probe_cfg.distill.model_copy(update={"mode": "off"})})
            curves[trains_with] = run_probe(probe_cfg, subsample, cfg.profile_epochs)
        epochs = min(setting.epochs or cfg.epochs, planned_epochs)
        cost = relative_cost(cfg, setting)
        probes.append(
            SettingProbe(setting, before, curves[trains_with], epochs, n, len(frames), cost, planned_epochs, probed)
        )
    log.info(
        "job %s: profiled %s on %d of %d frames; chose %s",
        key,
        ", ".join(
            f"{p.setting.name} (gain {p.predicted_gain:+.3f} in {p.planned_epochs} epochs, cost x{p.cost:.2f})"
            for p in probes
        ),
        n,
        len(frames),
        choose_setting(probes).setting.name,
    )
    return probes


def record_profile(job: TrainingJob, probes: list[SettingProbe], chosen: str) -> None:
    """The probes' predictions and work in the job's metrics; the chosen one's prediction becomes
    the job's predicted gain. Call after the job's own metrics are set."""
    work = sum(p.image_epochs for p in probes)
    job.metrics["profile_image_epochs"] = work
    job.metrics["heldout_evaluations"] += sum(len(p.points) for p in probes if p.probed)
    for i, probe in enumerate(probes):
        job.metrics[f"profile_{probe.setting.name}_gain"] = probe.predicted_gain
        if probe.setting.name == chosen:
            job.metrics["profile_choice"] = float(i)
            job.predicted_gain = probe.predicted_gain
            # image-epochs at the configured image size, the probes' included: this claim's work
            job.metrics["image_epochs"] = job.metrics["image_epochs"] * probe.pixel_cost + work
