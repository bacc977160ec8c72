"""Fine-tuning a student with ultralytics on teacher-labelled frames.

ultralytics does the training (augmentation, loss, optimiser, EMA); this module writes the
frames in its dataset layout and hands it the student's current weights through a trainer
subclass, the extension point ultralytics documents for custom models. With
`training.distill` on, a further subclass adds the distillation term
(cloud_trainer.distill_training).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from cloud_trainer.batchnorm_shift import StepShift
from cloud_trainer.distill_training import TeacherFeatures, distill_trainer
from edgesync import ultralytics_env
from edgesync.config import TrainingConfig
from edgesync.evaluation import map50
from edgesync.preprocess import preprocessed
from edgesync.student import StudentModel
from edgesync.types import Detection, detections_to_array

log = logging.getLogger(__name__)


@dataclass
class FineTuneResult:
    """The trained model and how much work it took (the benchmark's cost model charges for it)."""

    model: StudentModel
    epochs: int  # epochs actually run (early stopping may end sooner)
    images: int  # training images per epoch
    teacher_images: int = 0  # images the teacher ran on for distillation (training.distill)
    teacher_seconds: float = 0.0  # and the wall time that took
    kept_epoch: int | None = None  # the epoch whose weights model holds, where not the last (training.keep)
    # how much the kept epoch's held-out score overstates it for having been picked on those
    # frames (training.judge "cross-validated"; 0 where no epoch was picked or it is not measured)
    selection_optimism: float = 0.0
    # images run forward to keep the batch-norm statistics with the steps (training.bn_follows_steps)
    bn_shift_images: int = 0
    # the edge's scene change (edge clock) that stopped training early (training.stop_on_scene_change)
    scene_left_at: float | None = None
    delivered_on_preemption: bool = False  # stopped by a pre-emption, its best epoch judged (preempt_delivers)

    @property
    def image_epochs(self) -> int:
        return self.epochs * self.images


@dataclass
class LabelledFrame:
    """A frame with its teacher boxes, in pixels of that frame."""

    image: np.ndarray
    labels: list[Detection]
    name: str


def write_yolo_dataset(root: Path, train: list[LabelledFrame], val: list[LabelledFrame], names: list[str]) -> Path:
    """Write images and YOLO txt labels under root; return the data.yaml ultralytics reads."""
    if root.exists():
        shutil.rmtree(root)
    for split, frames in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for frame in frames:
            h, w = frame.image.shape[:2]
            cv2.imwrite(str(root / "images" / split / f"{frame.name}.jpg"), frame.image)
            lines = []
            for d in frame.labels:
                x1, x2 = np.clip([d.x1, d.x2], 0, w)
                y1, y2 = np.clip([d.y1, d.y2], 0, h)
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                lines.append(f"{d.class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            (root / "labels" / split / f"{frame.name}.txt").write_text("\n".join(lines))
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data))
    return data_yaml


def _trainer_starting_from(state: dict, freeze_bn: bool = False, follow_steps: bool = False):
    """A DetectionTrainer whose model starts from the given weights instead of random ones, and
    with freeze_bn keeps every batch-norm layer's statistics (ultralytics does so for the layers
    `freeze` names; this extends it to all of them through the same hook, _model_train). With
    follow_steps the running statistics are corrected after every optimizer step for what the
    step changed (cloud_trainer.batchnorm_shift; pointless where freeze_bn keeps them)."""
    ultralytics_env.configure()
    from torch import nn
    from ultralytics.models.yolo.detect import DetectionTrainer

    class FineTuneTrainer(DetectionTrainer):
        bn_shift: StepShift | None = None  # set up with the EMA, in _setup_train

        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg=cfg, weights=None, verbose=False)
            model.load_state_dict(state, strict=True)
            return model

        def _model_train(self):
            super()._model_train()
            if freeze_bn:
                for module in self.model.modules():
                    if isinstance(module, nn.BatchNorm2d):
                        module.eval()

        def _setup_train(self):
            super()._setup_train()
            self.bn_shift = StepShift(self.model, self.ema.ema if self.ema else None) if follow_steps else None

        def preprocess_batch(self, batch):
            batch = super().preprocess_batch(batch)
            if self.bn_shift is not None:
                self.bn_shift.saw(batch["img"])
            return batch

        def optimizer_step(self):
            super().optimizer_step()
            if self.bn_shift is not None:
                self.bn_shift.after_step(self.ema.decay(self.ema.updates) if self.ema else 0.0)

    return FineTuneTrainer


def resumed_rate(done: int, total: int) -> float:
    """The share of lr0 ultralytics' linear schedule (lr0 to lr0 x lrf over the epochs) has got to
    after done of total epochs. A resumed job trains its remaining epochs as a new ultralytics
    run, whose schedule would start at lr0 again: a full-rate first step on weights that had
    nearly finished training, which is where fine-tunes of a few dozen frames collapse. Starting
    the new run here and letting it fall to lrf of that is close to the schedule the job would
    have run unbroken (the rate it ends at is lower still, and the optimizer's momentum is lost)."""
    lrf = ultralytics_default("lrf")
    return max(1 - done / total, 0) * (1 - lrf) + lrf


def ultralytics_default(argument: str):
    """ultralytics' own default for a training argument (its cfg/default.yaml: nbs 64, lr0 0.01, ...),
    read once the offline settings are in place."""
    ultralytics_env.configure()
    from ultralytics.cfg import DEFAULT_CFG

    return getattr(DEFAULT_CFG, argument)


def undo_epoch(trainer, state: dict[str, torch.Tensor]) -> None:
    """Put an ultralytics trainer back to state (the weights before the epoch just trained) and
    halve its learning rate for the epochs to come.

    The weights go back into both the model and its EMA (what the epoch's score was taken of);
    the optimizer's momentum and any gradients accumulated since its last step are dropped, as
    they point along the undone steps. The scheduler's base rates and the groups' initial rates
    (the warm-up's targets) are halved, so every later epoch's rate is half what it would have been.
    """
    trainer.model.load_state_dict(state)
    if trainer.ema is not None:
        trainer.ema.ema.load_state_dict(state)
    trainer.optimizer.zero_grad()
    trainer.optimizer.state.clear()
    trainer.scheduler.base_lrs = [lr / 2 for lr in trainer.scheduler.base_lrs]
    for group in trainer.optimizer.param_groups:
        group["initial_lr"] /= 2
        group["lr"] /= 2


def fine_tune(
    student: StudentModel,
    train: list[LabelledFrame],
    val: list[LabelledFrame],
    cfg: TrainingConfig,
    workdir: Path,
    epochs: int | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, int], None] | None = None,
    from_scratch: bool = False,
    on_weights: Callable[[int, dict[str, torch.Tensor]], bool | None] | None = None,
    teacher: TeacherFeatures | None = None,
    lr_scale: float = 1.0,
    resumed: tuple[int, int] | None = None,
) -> FineTuneResult:
    """Train a copy of student on train (validating on val) and return the result as a new model.

    ultralytics' own validation is off (val=False), so its patience never triggers: the worker's
    profiler scores the held-out frames after each epoch instead (cloud_trainer.profiler).
    on_weights(epochs_done, state_dict) gets the weights training would end with (the EMA)
    after every epoch, for checkpoints and that scoring; an exception it raises stops training,
    and False undoes the epoch: training goes on from the weights before it at half the learning
    rate (training.backtrack; see undo_epoch). lr_scale scales cfg.lr0 (a resumed job's backed-off rate).
    resumed: (epochs done, epochs in all) of a job resumed from its checkpoint; the learning rate
    then starts where the job's linear schedule had got to, not at lr0 again (see resumed_rate).
    teacher gives the feature maps cfg.distill needs (required unless its mode is off); it
    counts the images it ran on.
    """
    ultralytics_env.configure()
    from ultralytics import YOLO

    if not train:
        raise ValueError("fine_tune needs at least one training frame")
    if student.preprocess != "none":  # it learns from frames as it will see them
        train, val = as_seen_by(student, train), as_seen_by(student, val)
    data_yaml = write_yolo_dataset(workdir / "dataset", train, val or train[:1], student.class_names)
    total = epochs or cfg.epochs
    yolo = YOLO(student.arch, task="detect", verbose=False)
    epochs_run = 0

    def epoch_done(trainer) -> None:
        nonlocal epochs_run
        epochs_run = max(epochs_run, min(trainer.epoch + 1, total))
        if on_epoch is not None:
            on_epoch(epochs_run, total)

    yolo.add_callback("on_train_epoch_end", epoch_done)
    if on_weights is not None:
        # the weights an undone epoch goes back to: the student's (training copies them into a
        # model of its own, so they stay as they are), then each kept epoch's
        accepted = None if from_scratch else student.state_dict()

        def weights_done(trainer) -> None:
            nonlocal accepted
            model = trainer.ema.ema if trainer.ema is not None else trainer.model
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if on_weights(min(trainer.epoch + 1, total), state) is False:
                if accepted is None:
                    raise ValueError("the first epoch of training from scratch has no weights to go back to")
                undo_epoch(trainer, accepted)
            else:
                accepted = state

        yolo.add_callback("on_fit_epoch_end", weights_done)
    batch = min(cfg.batch, max(2, len(train)))
    # training from random weights (the bootstrap) takes ultralytics' rate; training.lr0 is a
    # fine-tune's, which starts from trained weights
    if from_scratch:
        lr0 = ultralytics_default("lr0")
    else:
        lr0 = cfg.lr0 * lr_scale * (resumed_rate(*resumed) if resumed else 1.0)
    overrides = {
        "data": str(data_yaml),
        "epochs": total,
        "imgsz": cfg.imgsz,
        "batch": batch,
        "lr0": lr0,
        "optimizer": cfg.optimizer,
        "momentum": cfg.momentum,
        "device": cfg.device,
        "workers": cfg.workers,
        "project": str(workdir),
        "name": "train",
        "exist_ok": True,
        "plots": False,
        "val": False,
        "verbose": False,
        "seed": seed,
        "deterministic": True,  # same seed, same numbers (the benchmark relies on it)
        "amp": False,
        "patience": max(3, total // 3),
        "warmup_epochs": min(3.0, total / 5) if from_scratch else cfg.warmup_epochs,
        "close_mosaic": max(0, total // 3),
    }
    if not from_scratch:
        # warm-up ramps the learning rate up from zero, but ultralytics starts the biases' at 0.1
        # and lowers it to lr0: that suits random weights, and undoes trained ones
        overrides["warmup_bias_lr"] = 0.0
    nbs = nominal_batch(cfg.nominal_batch, len(train), batch)
    if nbs is not None:
        overrides["nbs"] = nbs
    if cfg.freeze and not from_scratch:  # random weights have nothing worth keeping
        overrides["freeze"] = cfg.freeze
    trainer = (
        None
        if from_scratch
        else _trainer_starting_from(student.state_dict(), cfg.freeze_bn, cfg.bn_follows_steps and not cfg.freeze_bn)
    )
    if cfg.distill.mode != "off":
        if teacher is None:
            raise ValueError(f"training.distill.mode is {cfg.distill.mode!r} but no teacher features were given")
        from ultralytics.models.yolo.detect import DetectionTrainer

        trainer = distill_trainer(trainer or DetectionTrainer, teacher, cfg.distill)
    yolo.train(trainer=trainer, **overrides)
    shift = getattr(yolo.trainer, "bn_shift", None)
    if shift is not None:
        shift.close()  # its hooks and last batch go with the trainer's model
    model = StudentModel(
        yolo.model.float().eval(),
        student.class_names,
        student.imgsz,
        student.arch,
        version=student.version,
        conf=student.conf,
        iou=student.iou,
        device=student.device,
        preprocess=student.preprocess,
    )
    counted = (teacher.images, teacher.seconds) if teacher is not None else (0, 0.0)
    return FineTuneResult(model, epochs_run, len(train), *counted, bn_shift_images=shift.forward_images if shift else 0)


def nominal_batch(setting: int | str | None, images: int, batch: int) -> int | None:
    """The nominal batch ultralytics accumulates gradients up to (its `nbs`) for a job of this
    many training images at this batch size; None leaves ultralytics' own (64).

    "epoch": one optimizer step an epoch for a job of up to 64 images (its images rounded up to
    whole batches: ultralytics accumulates round(nbs / batch) batches), every 64 images on a larger
    one. With 64, a new scene's first job (8-12 frames, 10 epochs) takes two steps.
    """
    if setting == "epoch":
        return min(ultralytics_default("nbs"), batch * math.ceil(images / batch))
    return setting


def as_seen_by(student: StudentModel, frames: list[LabelledFrame]) -> list[LabelledFrame]:
    """frames with their images preprocessed as student preprocesses what it sees; labels kept."""
    images = preprocessed([f.image for f in frames], student.preprocess)
    return [replace(f, image=image) for f, image in zip(frames, images, strict=True)]


def predictions(student: StudentModel, frames: list[LabelledFrame], batch: int = 8) -> list[np.ndarray]:
    """student's boxes on each frame, as (N, 6) arrays (the layout edgesync.evaluation scores)."""
    preds = []
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        preds.extend(detections_to_array(p.detections) for p in student.predict([f.image for f in chunk]))
    return preds


def ground_truth(frames: list[LabelledFrame]) -> list[np.ndarray]:
    """The frames' labels, as (N, 6) arrays."""
    return [detections_to_array(f.labels) for f in frames]


def evaluate(student: StudentModel, frames: list[LabelledFrame], batch: int = 8) -> float:
    """mAP50 of student on frames against their labels."""
    if not frames:
        return float("nan")
    return map50(predictions(student, frames, batch), ground_truth(frames), len(student.class_names))
