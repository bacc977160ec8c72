"""The one place that converts protobuf messages to the project's typed values and back."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from edgesync.errors import InvalidInput
from edgesync.types import Detection, ModelManifest, PayloadInfo, Sample, SceneChange
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
        audit=s.audit,
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
        audit=bool(m.audit),
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
        payload=payload_to_pb(m.payload) if m.payload is not None else None,
        signature=m.signature,
        preprocess="" if m.preprocess == "none" else m.preprocess,
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
        payload=payload_from_pb(m.payload) if m.HasField("payload") else None,
        signature=m.signature,
        preprocess=m.preprocess or "none",
    )


def payload_to_pb(p: PayloadInfo) -> pb.PayloadInfo:
    return pb.PayloadInfo(
        encoding=p.encoding,
        sparse_fraction=p.sparse_fraction,
        compression=p.compression,
        base_version=p.base_version,
        base_sha256=p.base_sha256,
        size_bytes=p.size_bytes,
    )


def payload_from_pb(m: pb.PayloadInfo) -> PayloadInfo:
    return PayloadInfo(
        encoding=m.encoding or "full",
        sparse_fraction=float(m.sparse_fraction),
        compression=m.compression,
        base_version=int(m.base_version),
        base_sha256=m.base_sha256,
        size_bytes=int(m.size_bytes),
    )


def subscribe_request(edge_id: str, have_version: int, held: dict[int, str]) -> pb.SubscribeRequest:
    """The edge's subscription: the version it runs and the models (version -> sha256) it holds."""
    return pb.SubscribeRequest(
        edge_id=edge_id,
        have_version=have_version,
        held=[pb.HeldModel(version=v, sha256=sha) for v, sha in sorted(held.items())],
    )


def held_from_pb(m: pb.SubscribeRequest) -> dict[int, str]:
    """Versions (-> sha256) a subscribing edge holds, any of which may be a delta's base."""
    return {int(h.version): h.sha256 for h in m.held if h.version > 0 and h.sha256}


def scene_change_to_pb(c: SceneChange) -> pb.SceneChange:
    return pb.SceneChange(
        edge_id=c.edge_id,
        time=c.time,
        previous_scene_start=c.previous_scene_start,
        previous_signature=list(c.previous_signature),
        signature=list(c.signature),
        model_version=c.model_version,
        confidence=c.confidence,
    )


def scene_change_from_pb(m: pb.SceneChange) -> SceneChange:
    if len(m.signature) != len(m.previous_signature):
        raise InvalidInput(
            f"scene change from {m.edge_id!r}: signatures differ in length "
            f"({len(m.signature)} vs {len(m.previous_signature)})"
        )
    return SceneChange(
        edge_id=m.edge_id,
        time=float(m.time),
        previous_scene_start=float(m.previous_scene_start),
        previous_signature=tuple(m.previous_signature),
        signature=tuple(m.signature),
        model_version=int(m.model_version),
        confidence=float(m.confidence),
    )
