"""Model deltas over real gRPC: the edge says what it holds, receives a delta, and ends with the cloud's weights."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch

from cloud_trainer.app import CloudTrainer
from edge_agent.hotswap import HotSwapDetector
from edge_agent.model_store import EdgeModelStore
from edge_agent.updates import UpdateListener
from edgesync.config import CloudConfig, RetryConfig, parse_config
from edgesync.delta import prepare
from edgesync.student import StudentModel
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

EDGE = "cam-delta"
CLASSES = ["person", "car"]
DOWNLINK = {"encoding": "int8-delta", "sparse_fraction": 0.1}


@pytest.fixture(scope="module")
def models() -> tuple[StudentModel, StudentModel]:
    """A student and the same student after a small fine-tune step."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, version=1)
    gen = torch.Generator().manual_seed(1)
    state = {
        k: v + torch.randn(v.shape, generator=gen) * 0.01 if v.is_floating_point() else v
        for k, v in student.state_dict().items()
    }
    return student, StudentModel.from_state(state, CLASSES, 64, "yolov8n.yaml")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[CloudTrainer, pb_grpc.EdgeSyncStub]]:
    cfg = parse_config(
        CloudConfig,
        {
            "listen": "127.0.0.1:0",
            "api": {"enabled": False},
            "data_dir": str(tmp_path / "cloud"),
            "workers": 0,
            "downlink": DOWNLINK,
        },
    )
    trainer = CloudTrainer(cfg)
    port = trainer.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.EdgeSyncStub(channel)
    stub.Register(pb.RegisterRequest(edge_id=EDGE, class_names=CLASSES), timeout=10)
    try:
        yield trainer, stub
    finally:
        channel.close()
        trainer.stop()


def _listen(stub, store: EdgeModelStore, detector: HotSwapDetector) -> tuple[UpdateListener, threading.Event]:
    listener = UpdateListener(
        stub, EDGE, lambda: detector, store, RetryConfig(initial_s=0.05, max_s=0.2), {}, lambda: detector.version
    )
    stop = threading.Event()
    threading.Thread(target=listener.run, args=(stop,), daemon=True).start()
    return listener, stop


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_edge_receives_a_sparse_int8_delta_and_holds_the_cloud_weights(cloud, models, tmp_path: Path) -> None:
    trainer, stub = cloud
    student, trained = models
    v1, _ = student.encode()
    trainer.registry.register(EDGE, v1, student.manifest(v1))
    store = EdgeModelStore(tmp_path / "edge")
    store.save(trainer.registry.manifest(EDGE, 1), v1)
    # what the worker registers: the candidate as the edge will rebuild it from v1, and that delta
    update = prepare(trained.encode()[0], v1, 1, trainer.cfg.downlink)
    stored = trainer.registry.register(
        EDGE, update.weights, trained.manifest(update.weights, parent=1), payloads=[update.payload]
    )
    detector = HotSwapDetector(student)
    listener, stop = _listen(stub, store, detector)
    swaps = []
    try:  # the frame loop's between-frames check, until the update is in
        _wait_for(lambda: swaps.append(detector.swap_if_ready()) or swaps[-1] is not None)
    finally:
        stop.set()
        listener.close()

    assert swaps[-1].version == 2 and detector.current.version == 2
    assert store.held()[2] == stored.sha256 == trainer.registry.load(EDGE, 2)[0].sha256
    assert store.weights(2) == update.weights
    assert listener.rejected == 0
    # the downlink carried the delta, a small share of the fp16 weights, and the cloud counted it
    assert listener.received_bytes == len(update.payload[1]) < 0.25 * len(update.weights)
    _wait_for(lambda: trainer.store.get_edge(EDGE).downlink_bytes > 0)  # counted once the last chunk is out
    assert trainer.store.get_edge(EDGE).downlink_bytes == listener.received_bytes


def test_an_edge_holding_other_weights_gets_full_weights(cloud, models, tmp_path: Path) -> None:
    trainer, stub = cloud
    student, trained = models
    v1, _ = student.encode()
    trainer.registry.register(EDGE, v1, student.manifest(v1))
    other, _ = trained.encode()  # the edge's own v1 is not the cloud's v1
    store = EdgeModelStore(tmp_path / "edge")
    store.save(trained.manifest(other, version=1), other)
    trainer.registry.register(EDGE, v1, student.manifest(v1, parent=1))  # v2: the cloud's v1 again

    detector = HotSwapDetector(student)
    listener, stop = _listen(stub, store, detector)
    try:
        _wait_for(lambda: 2 in store.held())
    finally:
        stop.set()
        listener.close()

    assert store.weights(2) == v1 and listener.rejected == 0
    assert listener.received_bytes > 0.8 * len(v1)  # full weights (zstd), no delta against the wrong v1
