"""Typed values that cross module and process boundaries.

Services work with these, never with protobuf messages; edgesync.wire converts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from edgesync.errors import InvalidInput

EDGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# what a model may do to a frame before it sees it (the work itself: edgesync.preprocess)
Preprocess = Literal["none", "auto-levels"]
PREPROCESSING: tuple[str, ...] = get_args(Preprocess)


def check_edge_id(edge_id: str) -> str:
    """Return edge_id if it is a safe identifier (it becomes part of paths and keys)."""
    if not EDGE_ID_PATTERN.fullmatch(edge_id or "") or edge_id in {".", ".."}:
        raise InvalidInput(f"invalid edge id {edge_id!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return edge_id


def check_preprocess(mode: str) -> str:
    if mode not in PREPROCESSING:
        raise InvalidInput(f"unknown preprocessing {mode!r}; known: {', '.join(PREPROCESSING)}")
    return mode


@dataclass(frozen=True)
class Detection:
    """One box in pixels of its frame."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    score: float = 1.0

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2, float(self.class_id), self.score]

    @classmethod
    def from_list(cls, values: list[float]) -> Detection:
        x1, y1, x2, y2, c, s = values
        return cls(float(x1), float(y1), float(x2), float(y2), int(c), float(s))


def detections_to_array(dets: list[Detection]) -> np.ndarray:
    """(N, 6) float array of x1, y1, x2, y2, class_id, score."""
    if not dets:
        return np.zeros((0, 6), dtype=np.float32)
    return np.asarray([d.as_list() for d in dets], dtype=np.float32)


@dataclass
class Sample:
    """A frame the edge uploads, with the student's view of it."""

    sample_id: str
    edge_id: str
    capture_time: float
    model_version: int
    jpeg: bytes
    detections: list[Detection] = field(default_factory=list)
    score: float = 0.0
    frame_index: int = -1
    scene_start: float = 0.0  # capture time of the last detected scene change before this frame
    audit: bool = False  # drawn at random rather than on merit (sampler.audit_share): validation data


@dataclass
class StoredSample:
    """A sample as the cloud keeps it: metadata, the JPEG, and teacher labels once labelled."""

    sample_id: str
    edge_id: str
    capture_time: float
    received_time: float
    model_version: int
    score: float
    frame_index: int
    student: list[Detection]
    width: int
    height: int
    labels: list[Detection] | None = None  # teacher boxes; None until labelled
    seq: int = 0  # arrival order per edge, assigned by the store
    scene_start: float = 0.0  # see Sample.scene_start
    audit: bool = False  # see Sample.audit: the cloud validates on it and never trains on it as fresh data


@dataclass(frozen=True)
class PayloadInfo:
    """How the bytes sent after a manifest encode the model (see edgesync.delta).

    The manifest's sha256 and size_bytes always describe the canonical weights (fp16
    safetensors); a delta names the base it applies to, and the edge rebuilds those exact bytes.
    """

    encoding: str = "full"  # full | fp16-delta | int8-delta
    sparse_fraction: float = 0.0  # 0: dense; else the top share of changed values per tensor
    compression: str = ""  # "" or zstd
    base_version: int = 0  # deltas: the version they apply to
    base_sha256: str = ""  # deltas: sha256 of that version's canonical weights
    size_bytes: int = 0  # bytes on the wire

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @property
    def label(self) -> str:
        """Short human-readable form, e.g. "int8-delta@0.1 from v3 (zstd)"."""
        text = self.encoding + (f"@{self.sparse_fraction:g}" if self.sparse_fraction else "")
        if self.base_version:
            text += f" from v{self.base_version}"
        return text + (f" ({self.compression})" if self.compression else "")


def model_key(sha256: str, preprocess: str) -> str:
    """One key per model as an edge runs it: weights (their sha256) and preprocessing. Two versions
    with the same key predict alike, so sending one where the other runs sends nothing new."""
    return sha256 if preprocess == "none" else f"{sha256}+{check_preprocess(preprocess)}"


@dataclass(frozen=True)
class ModelManifest:
    """Everything an edge needs to trust and load a model version."""

    version: int
    parent: int
    sha256: str
    size_bytes: int
    arch: str
    class_names: tuple[str, ...]
    imgsz: int
    created: float = field(default_factory=time.time)
    metrics: dict[str, float] = field(default_factory=dict)
    trained_until: float = 0.0  # arrival time of the newest sample it was trained on
    payload: PayloadInfo | None = None  # on the wire: how the bytes that follow encode it (None: canonical)
    # hex Ed25519 signature by the cloud over the other fields but payload (edgesync.signing); "" unsigned
    signature: str = ""
    # what the model does to a frame before it sees it (edgesync.preprocess): it was trained so
    preprocess: str = "none"

    def __post_init__(self) -> None:
        check_preprocess(self.preprocess)

    @property
    def model_key(self) -> str:
        """What the model's predictions depend on: its weights and its preprocessing (model_key)."""
        return model_key(self.sha256, self.preprocess)

    def to_json(self) -> dict:
        out = {
            "version": self.version,
            "parent": self.parent,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "arch": self.arch,
            "class_names": list(self.class_names),
            "imgsz": self.imgsz,
            "created": self.created,
            "metrics": dict(self.metrics),
            "trained_until": self.trained_until,
        }
        if self.payload is not None:
            out["payload"] = self.payload.to_json()
        if self.signature:
            out["signature"] = self.signature
        if self.preprocess != "none":  # absent for "none": manifests (and signatures) from before it read the same
            out["preprocess"] = self.preprocess
        return out

    @classmethod
    def from_json(cls, data: dict) -> ModelManifest:
        try:
            return cls(
                version=int(data["version"]),
                parent=int(data.get("parent", 0)),
                sha256=str(data["sha256"]),
                size_bytes=int(data["size_bytes"]),
                arch=str(data["arch"]),
                class_names=tuple(data["class_names"]),
                imgsz=int(data["imgsz"]),
                created=float(data.get("created", 0.0)),
                metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
                trained_until=float(data.get("trained_until", 0.0)),
                payload=PayloadInfo(**data["payload"]) if data.get("payload") else None,
                signature=str(data.get("signature", "")),
                preprocess=str(data.get("preprocess", "none")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # AttributeError: metrics not a mapping
            raise InvalidInput(f"malformed model manifest: {exc}") from exc


@dataclass
class EdgeInfo:
    """What the cloud knows about one edge."""

    edge_id: str
    class_names: list[str]
    description: str = ""
    registered: float = 0.0
    last_heartbeat: float = 0.0
    model_version: int = 0
    frames: int = 0
    queue_depth: int = 0
    confidence_proxy: float = 0.0
    uplink_bytes: int = 0
    downlink_bytes: int = 0
    samples_received: int = 0
    samples_rejected: int = 0


JOB_STATUSES = ("queued", "running", "done", "failed")


@dataclass
class TrainingJob:
    """A retraining job for one edge, queued by the training manager."""

    job_id: str
    edge_id: str
    priority: float
    created: float
    base_version: int
    reason: str = ""
    status: str = "queued"  # one of JOB_STATUSES
    started: float = 0.0
    finished: float = 0.0
    result_version: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    # the claim running it (cloud_trainer.state): which worker, its lease token, claims so far
    # (a job taken over from a worker whose lease expired counts 2, 3, ...)
    worker_id: str = ""
    lease: str = ""
    attempts: int = 0
    # accuracy gain (held-out mAP50, after - before): what the manager expected when it queued
    # the job, and what the worker measured; None until known
    predicted_gain: float | None = None
    achieved_gain: float | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> TrainingJob:
        return cls(**data)


@dataclass(frozen=True)
class SceneChange:
    """A scene change the edge's change-point detector saw (see edgesync.changepoint)."""

    edge_id: str
    time: float  # capture clock of the change; later samples carry it as scene_start
    previous_scene_start: float  # 0: the stream's first scene
    previous_signature: tuple[float, ...]  # mean embedding of the scene that ended
    signature: tuple[float, ...]  # embedding of the new scene
    model_version: int  # what the edge ran through the scene that ended
    confidence: float = 1.0


EVENT_KINDS = ("heartbeat", "accuracy", "scene_change", "model_deployed", "operator")


@dataclass(frozen=True)
class EdgeEvent:
    """One point of an edge's history, kept by the cloud for the API and the dashboard.

    kind is one of EVENT_KINDS: heartbeat (what the edge reported: confidence proxy, frames,
    queue depth, with the uplink and downlink byte counters at that moment), accuracy (the
    student's mAP50 against the teacher on a labelled batch of its uploads), scene_change (a
    change point the edge reported), model_deployed (the edge started running a new version,
    with the update delay), operator (an action taken through the API).
    """

    edge_id: str
    kind: str
    time: float  # the cloud's clock (time.time()) when it learned of the event
    data: dict[str, float | str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"edge_id": self.edge_id, "kind": self.kind, "time": self.time, "data": dict(self.data)}

    @classmethod
    def from_json(cls, data: dict) -> EdgeEvent:
        return cls(edge_id=data["edge_id"], kind=data["kind"], time=float(data["time"]), data=dict(data["data"]))
