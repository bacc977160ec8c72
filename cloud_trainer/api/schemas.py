"""The REST API's response and request bodies (they make its OpenAPI schema at /openapi.json).

Times are seconds since the epoch on the cloud's clock; accuracies are mAP50 in [0, 1]; byte
counts are totals since the edge registered.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

EdgeStatus = Literal["online", "offline", "paused", "pinned", "revoked"]


class Page(BaseModel, Generic[T]):
    """One page of a longer list: items offset..offset+limit of total."""

    items: list[T]
    total: int
    offset: int
    limit: int


class EdgeSummary(BaseModel):
    edge_id: str
    description: str
    status: EdgeStatus  # online or offline by heartbeat; paused, pinned or revoked by an operator
    online: bool
    last_heartbeat: float
    model_version: int = Field(description="the version the edge reports running")
    latest_version: int = Field(description="the newest version the registry holds for it")
    pinned_version: int = 0
    paused: bool = False
    live_map50: float | None = Field(None, description="the student's mAP50 against the teacher on recent uploads")
    confidence_proxy: float = Field(description="the edge's running mean detection confidence")
    frames: int
    queue_depth: int = Field(description="samples waiting for upload on the edge")
    uplink_bytes: int
    downlink_bytes: int
    samples_received: int
    samples_rejected: int
    samples_labelled: int
    scene_changes: int
    last_scene_change: float | None = None
    jobs_queued: int
    jobs_running: int


class Event(BaseModel):
    kind: str
    time: float
    data: dict[str, float | str]


class Deployment(BaseModel):
    """The edge started running a version (as its next heartbeat reported)."""

    time: float
    version: int
    origin: str  # trained, zoo, operator (rollback or pin), base
    delay_s: float | None = Field(None, description="newest training frame (or issue, for copies) to running")


class EdgeHistory(BaseModel):
    """Series for the dashboard's charts, oldest first."""

    accuracy: list[Event]
    heartbeats: list[Event]
    scene_changes: list[Event]
    deployments: list[Deployment]
    operator: list[Event]


class EdgeDetail(EdgeSummary):
    history: EdgeHistory


class SampleOut(BaseModel):
    sample_id: str
    seq: int
    capture_time: float
    received_time: float
    scene_start: float
    model_version: int
    score: float = Field(description="the edge sampler's score when it chose the frame")
    audit: bool = Field(False, description="drawn at random for validation rather than chosen on merit")
    width: int
    height: int
    labelled: bool
    student_boxes: int
    teacher_boxes: int | None
    thumbnail: str = Field(description="path of a JPEG with teacher (green) and student (orange) boxes")


class JobOut(BaseModel):
    job_id: str
    edge_id: str
    status: str
    priority: float
    reason: str
    created: float
    started: float
    finished: float
    duration_s: float | None
    base_version: int
    result_version: int
    predicted_gain: float | None
    achieved_gain: float | None
    worker_id: str
    attempts: int
    error: str
    metrics: dict[str, float]


class ModelOut(BaseModel):
    edge_id: str
    version: int
    parent: int
    created: float
    origin: str  # base, trained, zoo (a stored specialist sent again), operator (rollback or pin)
    copy_of: int = Field(0, description="for zoo and operator copies: the version whose weights it carries")
    size_bytes: int
    sha256: str
    map50: float | None = Field(None, description="held-out mAP50 when it was registered")
    parent_map50: float | None = None
    trained_until: float
    preprocess: str = Field("none", description="what the model does to a frame first: none or auto-levels")
    running: bool = Field(description="the edge reports running this version")


class PinRequest(BaseModel):
    version: int = Field(ge=1)


class ActionResult(BaseModel):
    edge_id: str
    action: str
    detail: str
    version: int | None = None
    job_id: str | None = None


class Overview(BaseModel):
    edges: int
    online: int
    samples_received: int
    samples_labelled: int
    uplink_bytes: int
    downlink_bytes: int
    jobs: dict[str, int]
    models: int
    store: str
    time: float
