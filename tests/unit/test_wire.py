"""Wire conversion: typed values survive the protobuf round trip; garbage is refused clearly."""

from __future__ import annotations

import pytest

from edgesync import wire
from edgesync.errors import InvalidInput
from edgesync.types import Detection, ModelManifest, Sample
from edgesync.v1 import edgesync_pb2 as pb


def make_sample(**overrides: object) -> Sample:
    # Floats exactly representable as float32, so the round trip is exact.
    values: dict = dict(
        sample_id="cam-1:000123",
        edge_id="cam-1",
        capture_time=1_700_000_000.123456,  # a double on the wire
        model_version=7,
        jpeg=b"\xff\xd8\xff\xe0fake jpeg\x00\x01\xff\xd9",
        detections=[Detection(1.0, 2.5, 30.25, 40.0, 0, 0.75), Detection(5.0, 6.0, 7.0, 8.0, 1, 0.5)],
        score=0.625,
        frame_index=123,
        scene_start=1_700_000_000.5,
        audit=True,
    )
    values.update(overrides)
    return Sample(**values)


def make_manifest() -> ModelManifest:
    return ModelManifest(
        version=4,
        parent=3,
        sha256="ab" * 32,
        size_bytes=6_076_180,
        arch="yolov8n.yaml",
        class_names=("person", "car"),
        imgsz=320,
        created=1_700_000_123.5,
        metrics={"map50": 0.8125, "parent_map50": 0.5},
        trained_until=1_700_000_000.25,
        signature="5e" * 64,
    )


def test_sample_round_trips_through_bytes() -> None:
    original = make_sample()
    assert wire.sample_from_bytes(wire.sample_to_bytes(original)) == original


def test_sample_round_trips_through_a_message() -> None:
    original = make_sample()
    message = wire.sample_to_pb(original)
    assert isinstance(message, pb.Sample)
    assert wire.sample_from_pb(message) == original


def test_sample_without_detections_round_trips() -> None:
    original = make_sample(detections=[], jpeg=b"", score=0.0, frame_index=-1)
    assert wire.sample_from_bytes(wire.sample_to_bytes(original)) == original


def test_decoded_sample_has_plain_python_types() -> None:
    decoded = wire.sample_from_bytes(wire.sample_to_bytes(make_sample()))
    assert type(decoded.jpeg) is bytes
    assert type(decoded.model_version) is int
    assert all(type(d) is Detection and type(d.class_id) is int for d in decoded.detections)


def test_manifest_round_trips_through_a_message() -> None:
    original = make_manifest()
    assert wire.manifest_from_pb(wire.manifest_to_pb(original)) == original


def test_manifest_round_trips_through_serialised_bytes() -> None:
    original = make_manifest()
    data = wire.manifest_to_pb(original).SerializeToString()
    message = pb.ModelManifest()
    message.ParseFromString(data)
    decoded = wire.manifest_from_pb(message)
    assert decoded == original
    assert isinstance(decoded.class_names, tuple)


def test_manifest_inside_a_model_chunk_round_trips() -> None:
    original = make_manifest()
    chunk = pb.ModelChunk(manifest=wire.manifest_to_pb(original), last=False)
    parsed = pb.ModelChunk.FromString(chunk.SerializeToString())
    assert parsed.HasField("manifest")
    assert wire.manifest_from_pb(parsed.manifest) == original


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff\xff", b"not a protobuf at all", b"\x0a\x05ab", b"\x08", b"\x0a\x01\xff"],
    ids=["invalid-tag", "text", "short-field", "truncated-varint", "bad-utf8"],
)
def test_garbage_bytes_are_invalid_input_naming_the_source(garbage: bytes) -> None:
    with pytest.raises(InvalidInput, match="spill/0001.pb"):
        wire.sample_from_bytes(garbage, source="spill/0001.pb")
