"""The interface every teacher backend implements.

A teacher labels frames for the cloud: it turns BGR frames into boxes of the deployment's
target classes. Backends differ in what they run (OpenCV DNN, ultralytics) and in their own
class vocabulary; each maps its vocabulary onto ``class_names`` by name, so a sample labelled
by one teacher means the same as one labelled by another.

A teacher may also give its intermediate feature maps (``features``), which distillation pulls
the student's neck features towards (cloud_trainer.distill_training); a backend without them
says so when distillation is configured, not in the middle of a job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

import numpy as np

from edgesync.errors import ConfigError, InvalidInput
from edgesync.types import Detection


class Teacher(ABC):
    """Labels frames with boxes of ``class_names``.

    ``label`` takes BGR uint8 frames of any size and returns, per frame, boxes in that
    frame's pixels whose ``class_id`` indexes ``class_names`` and whose score is at least
    the configured confidence.
    """

    name: str
    class_names: list[str]

    @abstractmethod
    def label(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """One list of detections per frame, in the order given."""

    def features(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Feature maps of the frames at several levels, finest first: one float32 (N, C, H, W)
        array per level, each frame resized (not letterboxed) to the backend's input so the maps
        stay aligned with a square training image. Computed without gradients.

        Backends that cannot give features raise ConfigError.
        """
        raise ConfigError(f"teacher {self.name} gives no feature maps: training.distill.mode must be off")

    @property
    def labels_key(self) -> str:
        """What sets this teacher's labels, for caches of them: its name, classes and settings."""
        return f"{self.name}:{self.class_names}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, classes={self.class_names})"


def map_classes(wanted: list[str], available: Mapping[int, str], backend: str) -> dict[int, int]:
    """Map backend class ids to indexes of ``wanted``, matching by name.

    Raises ConfigError naming the unknown classes and listing the valid ones, so a typo in
    ``teacher.classes`` is caught at start-up instead of silently labelling nothing.
    """
    if not wanted:
        raise ConfigError(f"teacher.classes is empty: list at least one {backend} class")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"teacher.classes has duplicates: {wanted}")
    by_name = {name: class_id for class_id, name in available.items()}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        valid = ", ".join(_unique(available.values()))
        raise ConfigError(f"teacher.classes {unknown} not known to the {backend} teacher; valid names: {valid}")
    return {by_name[name]: index for index, name in enumerate(wanted)}


def check_frames(frames: list[np.ndarray]) -> None:
    """Raise InvalidInput unless every frame is an HxWx3 uint8 image."""
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise InvalidInput(f"frame {i}: expected an HxWx3 uint8 BGR image, got shape {shape} dtype {dtype}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise InvalidInput(f"frame {i}: empty image of shape {frame.shape}")


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
