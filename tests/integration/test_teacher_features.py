"""Teachers' feature maps for distillation, from the real SSD graph and a real ultralytics checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesync import ultralytics_env
from edgesync.config import SSDTeacherConfig, UltralyticsTeacherConfig
from edgesync.teachers import build_teacher
from edgesync.teachers.ssd import FEATURE_LAYERS

pytestmark = pytest.mark.integration

BUS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets" / "bus.jpg"


def test_ssd_teacher_gives_its_three_box_predictor_maps_per_frame() -> None:
    teacher = build_teacher(SSDTeacherConfig(classes=["person", "bus"]))
    bus = cv2.imread(str(BUS))
    square = cv2.resize(bus, (320, 320))  # a training image is square
    frames = [square, bus, square[:, ::-1].copy(), square, square, square]  # more than one batch of 4
    maps = teacher.features(frames)
    assert len(maps) == len(FEATURE_LAYERS) == 3
    assert [m.shape for m in maps] == [(6, 576, 19, 19), (6, 1280, 10, 10), (6, 512, 5, 5)]
    assert all(m.dtype == np.float32 and float(m.min()) >= 0 and float(m.max()) <= 6 for m in maps)  # ReLU6
    assert float(maps[0][0].max()) > 0
    np.testing.assert_allclose(maps[1][0], maps[1][3], atol=1e-5)  # same frame, same maps, whichever batch
    (alone,) = teacher.label([bus])
    assert teacher.label([bus]) == [alone], "labelling is unchanged by the feature net beside it"


def test_ultralytics_teacher_gives_its_neck_features(tmp_path) -> None:
    ultralytics_env.configure()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model.names = {0: "person", 1: "car"}
    path = tmp_path / "tiny-yolov8n.pt"
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect"}}, path)
    teacher = build_teacher(UltralyticsTeacherConfig(weights=path, classes=["person", "car"], imgsz=128))
    bus = cv2.imread(str(BUS))
    teacher.label([bus])  # predict() fuses the model first; features still come from the same layers
    maps = teacher.features([bus, bus, bus])
    assert [m.shape for m in maps] == [(3, 64, 16, 16), (3, 128, 8, 8), (3, 256, 4, 4)]  # P3-P5 at 128 px
    np.testing.assert_allclose(maps[0][0], maps[0][2], atol=1e-4)
