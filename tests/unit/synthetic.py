"""Synthetic labelled frames for tests that run a real (tiny) ultralytics fine-tune: dark noise
with one bright box each, labelled as a person."""

from __future__ import annotations

import numpy as np

from cloud_trainer.training import LabelledFrame
from edgesync.types import Detection

CLASSES = ["person", "car"]


def frames(n: int, seed: int = 0) -> list[LabelledFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
        x, y = int(rng.integers(4, 30)), int(rng.integers(4, 30))
        image[y : y + 24, x : x + 16] = 220
        out.append(LabelledFrame(image, [Detection(x, y, x + 16, y + 24, 0, 1.0)], f"{i:04d}"))
    return out
