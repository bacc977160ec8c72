"""The one place that converts protobuf messages to the project's typed values and back."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from edgesync.errors import InvalidInput
from edgesync.types import Detection, ModelManifest, Sample
from edgesync.v1 import edgesync_pb2 as pb


def detection_to_pb(d: Detection) -> pb.Detection:
    return pb.Detection(x1=d.x1, y1=d.y1, x2=d.x2, y2=d.y2, class_id=d.class_id, score=d.score)


def detection_from_pb(m: pb.Detection) -> Detection:
    return Detection(m.x1, m.y1, m.x2, m.y2, int(m.class_id), float(m.score))


def sample_to_pb(s: Sample) -> pb.Sample:
    return pb.Sample(
        sample_id=s.sample_id,
        edge_id=s.edge_id,
        capture_time=s.capture_time,
        model_version=s.model_version,
        jpeg=s.jpeg,
        detections=[detection_to_pb(d) for d in s.detections],
        score=s.score,
        frame_index=s.frame_index,
        scene_start=s.scene_start,
    )


def sample_from_pb(m: pb.Sample) -> Sample:
    return Sample(
        sample_id=m.sample_id,
        edge_id=m.edge_id,
        capture_time=m.capture_time,
        model_version=int(m.model_version),
        jpeg=bytes(m.jpeg),
        detections=[detection_from_pb(d) for d in m.detections],
        score=float(m.score),
        frame_index=int(m.frame_index),
        scene_start=float(m.scene_start),
    )


def sample_to_bytes(s: Sample) -> bytes:
    """Serialise a sample (used by the edge's disk spill as well as the wire)."""
    return sample_to_pb(s).SerializeToString()


def sample_from_bytes(data: bytes, source: str = "sample") -> Sample:
    msg = pb.Sample()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidInput(f"{source}: not a valid Sample message: {exc}") from None
    return sample_from_pb(msg)


def manifest_to_pb(m: ModelManifest) -> pb.ModelManifest:
    return pb.ModelManifest(
        version=m.version,
        parent=m.parent,
        sha256=m.sha256,
        size_bytes=m.size_bytes,
        arch=m.arch,
        class_names=list(m.class_names),
        imgsz=m.imgsz,
        created=m.created,
        metrics=dict(m.metrics),
        trained_until=m.trained_until,
    )


def manifest_from_pb(m: pb.ModelManifest) -> ModelManifest:
    return ModelManifest(
        version=int(m.version),
        parent=int(m.parent),
        sha256=m.sha256,
        size_bytes=int(m.size_bytes),
        arch=m.arch,
        class_names=tuple(m.class_names),
        imgsz=int(m.imgsz),
        created=float(m.created),
        metrics={k: float(v) for k, v in m.metrics.items()},
        trained_until=float(m.trained_until),
    )
