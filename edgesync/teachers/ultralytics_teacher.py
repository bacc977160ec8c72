"""Production teacher: any ultralytics detection checkpoint the user provides (e.g. a YOLO11x).

The weights must be a local file; this backend never downloads, so a wrong path fails at
start-up with the path in the message instead of reaching for a model hub.

Features for distillation are the teacher's neck outputs, the inputs of its Detect head (the
layers its ``f`` indices name, P3-P5 for a YOLO), captured with forward hooks while the model
runs on the frames resized to ``imgsz`` (the same capture cloud_trainer.distill_training uses on
the student).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from edgesync import ultralytics_env
from edgesync.config import UltralyticsTeacherConfig
from edgesync.distill import neck_features
from edgesync.errors import AssetError, ConfigError
from edgesync.teachers.base import Teacher, check_frames, map_classes
from edgesync.types import Detection

log = logging.getLogger(__name__)

DEFAULT_BATCH = 8


class UltralyticsTeacher(Teacher):
    """An ultralytics detector whose class names are mapped onto ``cfg.classes`` by name."""

    def __init__(self, cfg: UltralyticsTeacherConfig, batch_size: int = DEFAULT_BATCH):
        self.cfg = cfg
        self.class_names = list(cfg.classes)
        self.batch_size = max(1, batch_size)
        weights = cfg.weights.expanduser()
        if not weights.is_file():
            raise AssetError(f"teacher weights {weights} do not exist (a local ultralytics .pt is required)")
        ultralytics_env.configure()
        from ultralytics import YOLO  # after configure(): ultralytics reads its settings on import

        try:
            self._model = YOLO(str(weights))
        except Exception as exc:  # ultralytics raises many types for a bad checkpoint
            raise AssetError(f"cannot load teacher weights {weights}: {exc}") from exc
        if self._model.task != "detect":
            raise ConfigError(f"teacher weights {weights} are a {self._model.task!r} model, not a detector")
        names: dict[int, str] = dict(self._model.names)
        self._to_target = map_classes(self.class_names, names, f"ultralytics ({weights.name})")
        self._model_classes = sorted(self._to_target)
        self.name = f"ultralytics:{weights.stem}"
        self._lock = threading.Lock()  # labelling and feature extraction share one model
        self._device = None  # the torch device of cfg.device, resolved on first use
        log.info(
            "ultralytics teacher %s loaded: classes %s (model ids %s), conf %.2f, imgsz %d, device %s",
            weights,
            self.class_names,
            self._model_classes,
            cfg.conf,
            cfg.imgsz,
            cfg.device,
        )

    def label(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        check_frames(frames)
        out: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            with self._lock:
                results = self._model.predict(
                    frames[start : start + self.batch_size],
                    imgsz=self.cfg.imgsz,
                    conf=self.cfg.conf,
                    device=self.cfg.device,
                    classes=self._model_classes,  # filter inside NMS so other classes use no max_det slots
                    verbose=False,
                )
            out.extend(self._detections(result) for result in results)
        return out

    def features(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The neck outputs (the Detect head's inputs) of the frames resized to imgsz, finest first."""
        import cv2
        import torch

        check_frames(frames)
        size = self.cfg.imgsz
        levels: list[list[np.ndarray]] = []
        with self._lock:
            net = self._model.model  # the DetectionModel; predict() may have fused it, which keeps layer indices
            first = next(net.parameters())
            if first.device != self._torch_device():  # a worker that only distils never calls predict(),
                net.to(self._torch_device())  # which is what otherwise puts it on the configured device
                first = next(net.parameters())
            device, dtype = first.device, first.dtype
            for start in range(0, len(frames), self.batch_size):
                chunk = [cv2.resize(f, (size, size))[:, :, ::-1] for f in frames[start : start + self.batch_size]]
                x = torch.from_numpy(np.ascontiguousarray(np.stack(chunk).transpose(0, 3, 1, 2)))
                maps = neck_features(net, x.to(device=device, dtype=dtype) / 255.0)  # eval mode, no gradients
                for i, m in enumerate(maps):
                    if len(levels) <= i:
                        levels.append([])
                    levels[i].append(m.float().cpu().numpy())
        return [np.concatenate(level, axis=0) for level in levels]

    def _torch_device(self):
        """cfg.device as torch names it ("0" is cuda:0), resolved the way predict() resolves it."""
        if self._device is None:
            from ultralytics.utils.torch_utils import select_device

            self._device = select_device(self.cfg.device, verbose=False)
        return self._device

    def _detections(self, result: Any) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy()
        classes = boxes.cls.cpu().numpy().astype(np.int64)
        scores = boxes.conf.cpu().numpy()
        return [
            Detection(float(x1), float(y1), float(x2), float(y2), self._to_target[int(c)], float(s))
            for (x1, y1, x2, y2), c, s in zip(xyxy, classes, scores, strict=True)
            if int(c) in self._to_target and s >= self.cfg.conf
        ]
