"""Per-edge credentials over real gRPC: an edge is refused without its token, as another edge, or
once revoked; the refusals are clear and the server stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from cloud_trainer.app import CloudTrainer
from edgesync.config import CloudConfig, parse_config
from edgesync.credentials import EdgeCredentials, edge_token
from edgesync.errors import ConfigError
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

SECRET = "0123456789abcdef-lab-secret"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[CloudTrainer, int]]:
    cfg = parse_config(
        CloudConfig,
        {
            "listen": "127.0.0.1:0",
            "api": {"enabled": False},
            "data_dir": str(tmp_path),
            "workers": 0,
            "security": {"edge_secret": SECRET},
        },
    )
    trainer = CloudTrainer(cfg)
    port = trainer.start()
    try:
        yield trainer, port
    finally:
        trainer.stop()


def _stub(port: int, edge_id: str | None = None, token: str | None = None) -> pb_grpc.EdgeSyncStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    if edge_id is not None:
        channel = grpc.intercept_channel(channel, EdgeCredentials(edge_id, token or edge_token(SECRET, edge_id)))
    return pb_grpc.EdgeSyncStub(channel)


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()


def test_only_an_edge_with_its_own_token_gets_in(cloud) -> None:
    _, port = cloud
    register = pb.RegisterRequest(edge_id="cam-1", class_names=["person"])
    missing = _refusal(lambda: _stub(port).Register(register, timeout=5))
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED and "cloud.token" in missing.details()
    wrong = _refusal(lambda: _stub(port, "cam-1", "f" * 64).Register(register, timeout=5))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED and "wrong token" in wrong.details()
    other = _refusal(lambda: _stub(port, "cam-2").Register(register, timeout=5))
    assert other.code() == grpc.StatusCode.PERMISSION_DENIED and "cannot act as edge 'cam-1'" in other.details()

    cam1 = _stub(port, "cam-1")
    cam1.Register(register, timeout=5)
    cam1.Heartbeat(pb.HeartbeatRequest(edge_id="cam-1", frames=3), timeout=5)
    acks = list(
        cam1.UploadSamples(
            iter(
                [
                    pb.Sample(sample_id="a", edge_id="cam-1", jpeg=_jpeg()),
                    pb.Sample(sample_id="b", edge_id="cam-2", jpeg=_jpeg()),  # uploading as another edge
                ]
            ),
            timeout=10,
        )
    )
    assert [a.accepted for a in acks] == [True, False]
    assert "cannot act as edge 'cam-2'" in acks[1].error


def test_a_revoked_edge_is_refused_at_once_and_can_be_reinstated(cloud) -> None:
    trainer, port = cloud
    cam1 = _stub(port, "cam-1")
    cam1.Register(pb.RegisterRequest(edge_id="cam-1", class_names=["person"]), timeout=5)
    trainer.operations.revoke("cam-1")
    revoked = _refusal(lambda: cam1.Heartbeat(pb.HeartbeatRequest(edge_id="cam-1"), timeout=5))
    assert revoked.code() == grpc.StatusCode.PERMISSION_DENIED and "revoked" in revoked.details()
    acks = list(cam1.UploadSamples(iter([pb.Sample(sample_id="c", edge_id="cam-1", jpeg=_jpeg())]), timeout=10))
    assert not acks[0].accepted and "revoked" in acks[0].error
    trainer.operations.reinstate("cam-1")
    cam1.Heartbeat(pb.HeartbeatRequest(edge_id="cam-1"), timeout=5)


@pytest.mark.parametrize("secret", ["change-me", "secret", "short"])
def test_example_and_short_secrets_are_refused_at_start_up(secret: str) -> None:
    with pytest.raises(ConfigError, match="edge_secret"):
        parse_config(CloudConfig, {"security": {"edge_secret": secret}})
    with pytest.raises(ConfigError, match="api.token"):
        parse_config(CloudConfig, {"api": {"token": secret}})


def test_edge_token_command_prints_the_token_the_cloud_accepts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgesync.cli import app

    config = tmp_path / "cloud.yaml"
    config.write_text(f"security:\n  edge_secret: {SECRET}\n")
    result = CliRunner().invoke(app, ["edge-token", "cam-7", "--config", str(config)])
    assert result.exit_code == 0 and result.output.strip() == edge_token(SECRET, "cam-7")
    bare = tmp_path / "bare.yaml"
    bare.write_text("workers: 0\n")
    refused = CliRunner().invoke(app, ["edge-token", "cam-7", "--config", str(bare)])
    assert refused.exit_code == 1 and "edge_secret" in refused.output
