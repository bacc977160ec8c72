"""Bad input over real gRPC: each refusal is clear, counted, and the server stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud_trainer.app import CloudTrainer
from edgesync.config import CloudConfig, parse_config
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

LIMIT = 256 * 1024


@pytest.fixture(params=["memory", "redis"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CloudTrainer, grpc.Channel]]:
    store = {"type": "memory"}
    if request.param == "redis":
        store = {
            "type": "redis",
            "url": request.getfixturevalue("redis_url"),
            "prefix": request.getfixturevalue("redis_prefix"),
        }
    cfg = parse_config(
        CloudConfig,
        {
            "listen": "127.0.0.1:0",
            "api": {"listen": "127.0.0.1:0"},
            "data_dir": str(tmp_path),
            "store": store,
            "workers": 0,
            "limits": {"max_message_bytes": LIMIT},
        },
    )
    trainer = CloudTrainer(cfg)
    port = trainer.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield trainer, channel
    finally:
        channel.close()
        trainer.stop()


def _jpeg() -> bytes:
    image = np.full((48, 64, 3), 120, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _upload(stub: pb_grpc.EdgeSyncStub, *samples: pb.Sample) -> list[pb.SampleAck]:
    return list(stub.UploadSamples(iter(samples), timeout=10))


def _healthy(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_bad_samples_are_refused_by_name_counted_and_the_stream_goes_on(cloud) -> None:
    trainer, channel = cloud
    stub = pb_grpc.EdgeSyncStub(channel)
    stub.Register(pb.RegisterRequest(edge_id="cam-1", class_names=["person", "car"]), timeout=5)
    acks = _upload(
        stub,
        pb.Sample(sample_id="good-1", edge_id="cam-1", jpeg=_jpeg()),
        pb.Sample(sample_id="corrupt", edge_id="cam-1", jpeg=_jpeg()[:40] + b"\x00" * 10),
        pb.Sample(sample_id="png", edge_id="cam-1", jpeg=b"\x89PNG\r\n\x1a\n" + b"0" * 20),
        pb.Sample(sample_id="ghost-1", edge_id="ghost", jpeg=_jpeg()),
        pb.Sample(sample_id="../../etc/passwd", edge_id="cam-1", jpeg=_jpeg()),
        pb.Sample(sample_id="good-1", edge_id="cam-1", jpeg=_jpeg()),  # a retry: stored once
        pb.Sample(sample_id="good-2", edge_id="cam-1", jpeg=_jpeg()),
    )
    by_id = {a.sample_id: a for a in acks}
    assert [a.accepted for a in acks] == [True, False, False, False, False, True, True]
    assert "corrupt" in by_id["corrupt"].error and "JPEG" in by_id["corrupt"].error
    assert "not a JPEG" in by_id["png"].error
    assert "ghost" in by_id["ghost-1"].error
    assert "../../etc/passwd" in by_id["../../etc/passwd"].error
    edge = trainer.store.get_edge("cam-1")
    assert edge.samples_rejected == 3
    assert trainer.store.count_samples("cam-1") == 2
    assert _healthy(channel)


def test_oversized_message_is_refused_and_the_server_stays_up(cloud) -> None:
    _, channel = cloud
    stub = pb_grpc.EdgeSyncStub(channel)
    stub.Register(pb.RegisterRequest(edge_id="cam-1", class_names=["person"]), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        _upload(stub, pb.Sample(sample_id="big", edge_id="cam-1", jpeg=b"\xff\xd8" + b"0" * (LIMIT + 10)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _healthy(channel)


def test_invalid_and_unknown_edge_ids_get_clear_status_codes(cloud) -> None:
    _, channel = cloud
    stub = pb_grpc.EdgeSyncStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(pb.RegisterRequest(edge_id="../../etc"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "../../etc" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Heartbeat(pb.HeartbeatRequest(edge_id="never-registered"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "never-registered" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        next(iter(stub.SubscribeModels(pb.SubscribeRequest(edge_id="never-registered"), timeout=5)))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert _healthy(channel)
