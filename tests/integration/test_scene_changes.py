"""Scene-change reports over real gRPC: the zoo answers a returning scene with its specialist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cloud_trainer.app import CloudTrainer
from edgesync import wire
from edgesync.config import CloudConfig, parse_config
from edgesync.types import ModelManifest, SceneChange
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc
from edgesync.weights import sha256_hex

pytestmark = pytest.mark.integration

EDGE = "cam-zoo"
DAY, NIGHT = (1.0, 0.0), (0.0, 1.0)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[CloudTrainer, pb_grpc.EdgeSyncStub]]:
    cfg = parse_config(
        CloudConfig, {"listen": "127.0.0.1:0", "api": {"enabled": False}, "data_dir": str(tmp_path), "workers": 0}
    )
    trainer = CloudTrainer(cfg)
    port = trainer.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield trainer, pb_grpc.EdgeSyncStub(channel)
    finally:
        channel.close()
        trainer.stop()


def _register_model(trainer: CloudTrainer, payload: bytes, scene_start: float) -> int:
    manifest = ModelManifest(
        0, 0, sha256_hex(payload), len(payload), "yolov8n.yaml", ("person",), 64, metrics={"scene_start": scene_start}
    )
    return trainer.registry.register(EDGE, payload, manifest).version


def _report(stub, t: float, previous_start: float, previous, new, ran: int) -> int:
    change = SceneChange(EDGE, t, previous_start, previous, new, ran, 0.9)
    return stub.ReportSceneChange(wire.scene_change_to_pb(change), timeout=10).specialist_version


def test_a_returning_scene_is_answered_with_its_specialist(cloud) -> None:
    trainer, stub = cloud
    stub.Register(pb.RegisterRequest(edge_id=EDGE, class_names=["person"]), timeout=10)
    _register_model(trainer, b"day weights", 0.0)  # v1
    assert _report(stub, 100.0, 0.0, DAY, NIGHT, ran=1) == 0  # night is new
    assert trainer.store.get_meta(EDGE)["scene_changed_at"] == 100.0
    night = _register_model(trainer, b"night weights", 100.0)
    sent = _report(stub, 200.0, 100.0, NIGHT, (0.95, 0.05), ran=night)  # day returns
    assert sent == night + 1
    assert trainer.registry.load(EDGE, sent)[1] == b"day weights"


def test_scene_changes_from_unknown_edges_or_with_bad_signatures_are_refused(cloud) -> None:
    trainer, stub = cloud
    with pytest.raises(grpc.RpcError) as err:
        _report(stub, 1.0, 0.0, DAY, NIGHT, ran=1)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stub.Register(pb.RegisterRequest(edge_id=EDGE, class_names=["person"]), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        _report(stub, 1.0, 0.0, DAY, (1.0, 0.0, 0.0), ran=1)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "signatures" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.ReportSceneChange(pb.SceneChange(edge_id="../etc"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _report(stub, 2.0, 0.0, DAY, NIGHT, ran=1) == 0  # still serving
