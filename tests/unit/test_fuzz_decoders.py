"""Fuzzing the decoders that read what a client or the network sends (hypothesis, bounded).

Whatever the bytes, each decoder either returns a value or raises EdgeSyncError with a message;
nothing else escapes (no DecodeError, struct error, KeyError or crash), so servers answer a bad
input with a clear refusal and stay up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud_trainer.ingest import decode_jpeg
from edgesync import wire
from edgesync.config import LimitsConfig
from edgesync.delta import apply_payload, decode_update, encode_delta, encode_full
from edgesync.errors import EdgeSyncError
from edgesync.types import ModelManifest, PayloadInfo, SceneChange
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.weights import sha256_hex

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = LimitsConfig()


def _weights(seed: int) -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save(
        {
            "a.weight": rng.standard_normal((8, 4)).astype(np.float16),
            "b.bias": rng.standard_normal(4).astype(np.float16),
        }
    )


BASE, TARGET = _weights(1), _weights(2)


@FUZZ
@given(st.binary(max_size=2048))
def test_sample_bytes_decode_or_are_refused(data: bytes) -> None:
    try:
        sample = wire.sample_from_bytes(data, "fuzzed sample")
    except EdgeSyncError:
        return
    assert isinstance(sample.sample_id, str)


@FUZZ
@given(st.binary(max_size=4096))
def test_jpeg_bytes_decode_or_are_refused(data: bytes) -> None:
    for candidate in (data, b"\xff\xd8" + data):  # also past the magic-bytes check
        try:
            image = decode_jpeg(candidate, LIMITS, "fuzzed jpeg")
        except EdgeSyncError:
            continue
        assert image.ndim == 3


@FUZZ
@given(st.binary(max_size=1024))
def test_manifest_and_scene_change_messages_decode_or_are_refused(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    for message, convert in (
        (pb.ModelManifest(), wire.manifest_from_pb),
        (pb.SceneChange(), wire.scene_change_from_pb),
    ):
        try:
            message.ParseFromString(data)
        except DecodeError:
            continue  # the gRPC layer refuses what protobuf cannot parse, before any handler
        try:
            value = convert(message)
        except EdgeSyncError:
            continue
        assert isinstance(value, ModelManifest | SceneChange)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["version", "sha256", "size_bytes", "arch", "class_names", "imgsz", "metrics", "payload", "parent"]
        ),
        st.one_of(
            st.integers(),
            st.text(max_size=8),
            st.none(),
            st.lists(st.text(max_size=4), max_size=3),
            st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False), max_size=2),
        ),
    )
)
@example({"version": 0, "class_names": "", "sha256": None, "size_bytes": 0, "arch": None, "imgsz": 0, "metrics": 0})
def test_manifest_json_from_disk_loads_or_is_refused(data: dict) -> None:
    try:
        ModelManifest.from_json(data)
    except EdgeSyncError:
        pass


@FUZZ
@given(
    st.binary(max_size=3000), st.sampled_from(["fp16-delta", "int8-delta", "full"]), st.sampled_from(["zstd", "none"])
)
def test_update_payloads_rebuild_or_are_refused(payload: bytes, encoding: str, compression: str) -> None:
    info = PayloadInfo(encoding, 0.0, compression, 1, sha256_hex(BASE), len(payload))
    try:
        rebuilt = apply_payload(info, payload, BASE, "fuzzed update")
    except EdgeSyncError:
        return
    assert isinstance(rebuilt, bytes)


@FUZZ
@given(st.integers(min_value=0, max_value=4000), st.integers(min_value=0, max_value=255))
@example(104, 1)  # once damaged an entry's name into one without a kind prefix: IndexError
@example(265, 145)  # once made the zstd frame declare a size decompress() could not allocate: MemoryError
def test_a_damaged_real_delta_is_refused_by_its_sha256(position: int, flip: int) -> None:
    info, payload = encode_delta(TARGET, BASE, 1, "fp16-delta", None, "zstd")
    damaged = bytearray(payload)
    if flip and damaged:
        damaged[position % len(damaged)] ^= flip
    manifest = ModelManifest(2, 1, sha256_hex(TARGET), len(TARGET), "yolov8n.yaml", ("person",), 320, payload=info)
    try:
        _, weights = decode_update(manifest, bytes(damaged), {1: BASE}.get, "fuzzed delta")
    except EdgeSyncError:
        return
    assert weights == TARGET  # whatever decodes must be exactly the validated weights


def test_full_payload_round_trip_still_works() -> None:
    info, payload = encode_full(TARGET, "zstd")
    assert apply_payload(info, payload, None) == TARGET


@pytest.mark.parametrize("bad", [b"", b"\x00" * 10, b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_known_bad_jpegs_are_refused_with_the_source_named(bad: bytes) -> None:
    with pytest.raises(EdgeSyncError, match="fuzzed"):
        decode_jpeg(bad, LIMITS, "fuzzed jpeg")
