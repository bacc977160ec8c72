"""Back-pressure over real gRPC: a cloud over its per-edge rate or labelling backlog asks the edge
to send samples again later; the edge's spool keeps them, and every sample arrives exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from cloud_trainer.app import CloudTrainer
from edge_agent.spool import SampleSpool
from edge_agent.uploader import Uploader
from edgesync.config import CloudConfig, RetryConfig, parse_config
from edgesync.types import Sample
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

SAMPLES = 12


def _cloud(tmp_path: Path, **limits) -> CloudTrainer:
    cfg = parse_config(
        CloudConfig,
        {"listen": "127.0.0.1:0", "api": {"enabled": False}, "data_dir": str(tmp_path), "workers": 0,
         "limits": limits},
    )  # fmt: skip
    return CloudTrainer(cfg)


def _upload_all(cloud: CloudTrainer, tmp_path: Path, timeout_s: float = 30.0) -> Uploader:
    port = cloud.start()
    stub = pb_grpc.EdgeSyncStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    stub.Register(pb.RegisterRequest(edge_id="cam-1", class_names=["person"]), timeout=5)
    spool = SampleSpool(tmp_path / "spill", max_items=4, max_spill_items=100)
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()
    for i in range(SAMPLES):
        assert spool.put(Sample(f"s{i:02d}", "cam-1", float(i), 1, jpeg, frame_index=i))
    uploader = Uploader(stub, spool, RetryConfig(initial_s=0.05, max_s=0.4))
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while spool.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    assert spool.depth == 0, f"{spool.depth} samples still waiting after {timeout_s:.0f} s"
    assert spool.stats.dropped == 0
    return uploader


def test_an_edge_over_its_rate_is_held_back_and_loses_nothing(tmp_path: Path) -> None:
    cloud = _cloud(tmp_path, max_samples_per_s=8.0, burst_samples=3)
    try:
        uploader = _upload_all(cloud, tmp_path)
        stored = sorted(s.sample_id for s in cloud.store.list_samples("cam-1"))
    finally:
        cloud.stop()
    assert uploader.held_back >= 1, "the rate limit never pushed back"
    assert uploader.refused == 0 and uploader.acked == SAMPLES
    assert stored == [f"s{i:02d}" for i in range(SAMPLES)]  # every sample, each once


def test_a_full_labelling_backlog_holds_the_edge_back_until_the_teacher_catches_up(tmp_path: Path) -> None:
    cloud = _cloud(tmp_path, max_unlabelled_per_edge=4)
    # the teacher (labeller thread) works the backlog down, so the edge gets through in the end
    try:
        uploader = _upload_all(cloud, tmp_path, timeout_s=60.0)
        stored = cloud.store.count_samples("cam-1")
    finally:
        cloud.stop()
    assert uploader.held_back >= 1 and stored == SAMPLES
