"""Fine-tuning with generative attention distillation (issue 5): ultralytics trains, we add a term.

The training loss becomes ultralytics' detection loss on the teacher's boxes plus the
distillation term of `edgesync.distill.FeatureDistiller` between the student's neck features
(P3-P5, the inputs of its Detect head, captured with forward hooks on the layers the head's
`f` indices name) and the teacher's feature maps of the same augmented batch images (the
teacher runs on each training image of each epoch, without gradients; `TeacherFeatures`
counts the images and the seconds, which the benchmark's cost model charges).

How it plugs into ultralytics, through the trainer subclass `fine_tune` already uses:

- `get_model` builds the distiller once the student exists (its channel widths come from one
  forward pass in eval mode, the teacher's from one feature call);
- `build_optimizer` adds the distiller's parameters (1x1 adapters and VAEs; the attention maps
  have none) to ultralytics' optimizer as their own group, so they train with the student at
  the same learning rate and schedule;
- `_setup_train` then hooks the live model and wraps its criterion. ultralytics has by then
  taken its EMA copy of the model, and the EMA is what it checkpoints and what the worker keeps:
  neither the hooks nor the distiller ever reach the student's weights, whose state_dict has
  exactly the student's keys (tests/unit/test_distill_training.py).

ultralytics 8.4 ships its own feature distillation (`distill_model=`, a DistillationModel
wrapper holding a YOLO teacher); it cannot take the SSD teacher and checkpoints the wrapper,
so it is not used here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from edgesync.config import DistillConfig
from edgesync.distill import FeatureDistiller, NeckCapture, neck_features
from edgesync.teachers import Teacher

log = logging.getLogger(__name__)

LOSS_ITEM = "distill"  # the name ultralytics logs the term under, beside box, cls and dfl


def batch_to_frames(images: torch.Tensor) -> list[np.ndarray]:
    """An ultralytics training batch (N, 3, H, W, RGB in [0, 1]) as BGR uint8 frames."""
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return list(np.ascontiguousarray(pixels.permute(0, 2, 3, 1).flip(-1).cpu().numpy()))


class TeacherFeatures:
    """A teacher's feature maps for training batches, with the work counted.

    images: training images the teacher ran on; seconds: time spent in it (wall clock).
    """

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.images = 0
        self.seconds = 0.0

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        started = time.perf_counter()
        maps = self.teacher.features(batch_to_frames(images))
        self.seconds += time.perf_counter() - started
        self.images += images.shape[0]
        return [torch.from_numpy(m).to(images.device) for m in maps]

    def channels(self, imgsz: int) -> list[int]:
        """Channel widths of the teacher's levels (one uncounted feature call on a grey image)."""
        maps = self.teacher.features([np.full((imgsz, imgsz, 3), 114, np.uint8)])
        return [m.shape[1] for m in maps]


class DistillCriterion:
    """ultralytics' detection criterion plus the distillation term, ramped in over the warm-up.

    Returns what ultralytics expects of a criterion: (loss parts to be summed, scaled by the batch
    size as ultralytics scales its own, and a dict of detached parts for its log). While the
    ramp is at 0 the teacher is not run.
    """

    def __init__(
        self,
        detection: Any,
        distiller: FeatureDistiller,
        student: NeckCapture,
        teacher: TeacherFeatures,
        cfg: DistillConfig,
        batches_per_epoch: int,
    ) -> None:
        self.detection = detection
        self.distiller = distiller
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        self.batches_per_epoch = max(1, batches_per_epoch)
        self.batches = 0
        self.last_parts: dict[str, float] = {}

    def ramp(self) -> float:
        """The term's weight now: 0 to 1 linearly over the warm-up epochs (1 without warm-up)."""
        if self.cfg.warmup_epochs <= 0:
            return 1.0
        return min(1.0, self.batches / self.batches_per_epoch / self.cfg.warmup_epochs)

    def __call__(self, preds: Any, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, items = self.detection(preds, batch)
        weight = self.ramp()
        self.batches += 1
        images = batch["img"]
        term = torch.zeros((), device=loss.device)
        if weight > 0:
            with torch.no_grad():
                teacher_maps = self.teacher(images)
            generative = self.cfg.mode == "attention+generative"
            total, self.last_parts = self.distiller(self.student.maps(), teacher_maps, generative=generative)
            term = weight * total
        items = dict(items) | {LOSS_ITEM: term.detach()}
        return torch.cat([loss, (term * images.shape[0]).reshape(1).to(loss.dtype)]), items

    def __getattr__(self, name: str) -> Any:  # e.g. update(), which ultralytics calls when present
        detection = self.__dict__.get("detection")
        if detection is None:
            raise AttributeError(name)
        return getattr(detection, name)


def distill_trainer(base: type, teacher: TeacherFeatures, cfg: DistillConfig) -> type:
    """A subclass of the ultralytics trainer `base` that trains with distillation (module docstring)."""
    from ultralytics.utils.torch_utils import unwrap_model

    distill = cfg  # get_model has its own `cfg`

    class DistillTrainer(base):  # type: ignore[misc, valid-type]
        distiller: FeatureDistiller | None = None

        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            imgsz = int(self.args.imgsz)
            student = neck_features(model, torch.zeros(1, 3, imgsz, imgsz))
            self.distiller = FeatureDistiller(
                [m.shape[1] for m in student],
                teacher.channels(imgsz),
                attention_weight=distill.attention_weight,
                generative_weight=distill.generative_weight,
            )
            return model

        def build_optimizer(self, model, *args, **kwargs):
            optimizer = super().build_optimizer(model, *args, **kwargs)
            assert self.distiller is not None, "get_model builds the distiller first"
            self.distiller.to(self.device).train()
            like = optimizer.param_groups[0]  # same learning rate and momentum as the student's weights
            hyper = {k: v for k, v in like.items() if k not in ("params", "param_group", "weight_decay", "use_muon")}
            optimizer.add_param_group(
                {**hyper, "params": list(self.distiller.parameters()), "weight_decay": 0.0, "param_group": "distill"}
            )
            return optimizer

        def _setup_train(self):
            super()._setup_train()  # builds the EMA copy (what gets saved) before anything is hooked
            model = unwrap_model(self.model)
            capture = NeckCapture(model)
            model.criterion = DistillCriterion(
                model.init_criterion(), self.distiller, capture, teacher, distill, len(self.train_loader)
            )

            def unhook(trainer) -> None:
                capture.remove()
                unwrap_model(trainer.model).criterion = None

            self.add_callback("on_train_end", unhook)

    return DistillTrainer
