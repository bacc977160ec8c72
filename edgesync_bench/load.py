"""`edgesync bench load`: many edges uploading at once to one cloud on loopback.

Each simulated edge registers, then streams samples (a real JPEG of vtest.avi's first frame, a
new id each) at `rate` samples/s, or as fast as the cloud acknowledges them, with the edge's own
in-flight window, for a fixed time. Reported: samples stored per second in all, and the latency from sending a sample
to its acknowledgement (median, p99), plus how many the cloud held back (back-pressure) or
refused. The cloud runs in this process (gRPC, ingest, store, teacher labelling); no training.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import numpy as np

from cloud_trainer.app import CloudTrainer
from edgesync.assets import resolve_video
from edgesync.config import CloudConfig, StoreConfig
from edgesync.errors import SourceError
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

WINDOW = 8  # samples in flight per edge, as the edge's uploader


@dataclass
class EdgeLoad:
    edge_id: str
    latencies_s: list[float] = field(default_factory=list)
    accepted: int = 0
    held_back: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def _run_edge(port: int, load: EdgeLoad, jpeg: bytes, stop_at: float, rate: float | None) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.EdgeSyncStub(channel)
    sent: deque[float] = deque()
    window = threading.Semaphore(WINDOW)
    counter = 0

    def requests():
        nonlocal counter
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            if rate is not None:  # a paced edge, like one whose sampler picks `rate` frames a second
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1.0 / rate
            if not window.acquire(timeout=0.1):
                continue
            counter += 1
            sent.append(time.perf_counter())
            yield pb.Sample(sample_id=f"{load.edge_id}-{counter}", edge_id=load.edge_id, jpeg=jpeg, frame_index=counter)

    try:
        stub.Register(pb.RegisterRequest(edge_id=load.edge_id, class_names=["person", "car"]), timeout=30)
        for ack in stub.UploadSamples(requests(), timeout=max(5.0, stop_at - time.monotonic() + 30)):
            load.latencies_s.append(time.perf_counter() - sent.popleft())
            if ack.accepted:
                load.accepted += 1
            elif ack.retry:
                load.held_back += 1
            else:
                load.refused += 1
            window.release()
    except grpc.RpcError as exc:
        load.errors.append(f"{exc.code()}: {exc.details()}")
    finally:
        channel.close()


def run_load(
    edges: int,
    seconds: float,
    video: str = "vtest.avi",
    store: StoreConfig | None = None,
    data_dir: Path = Path("runs/bench/load"),
    rate: float | None = None,
) -> dict:
    """Run the load test and return its figures (see the module docstring)."""
    capture = cv2.VideoCapture(resolve_video(video))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SourceError(f"cannot read a frame of {video}")
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    settings = {"listen": "127.0.0.1:0", "data_dir": str(data_dir), "workers": 0, "api": {"enabled": False}}
    cfg = CloudConfig.model_validate({**settings, **({"store": store.model_dump()} if store else {})})
    cloud = CloudTrainer(cfg)
    port = cloud.start()
    loads = [EdgeLoad(f"load-{i:02d}") for i in range(edges)]
    started = time.monotonic()
    stop_at = started + seconds
    threads = [
        threading.Thread(target=_run_edge, args=(port, load, jpeg, stop_at, rate), daemon=True) for load in loads
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 60)
        elapsed = time.monotonic() - started
        stored = sum(cloud.store.count_samples(load.edge_id) for load in loads)
    finally:
        cloud.stop()
    latencies = [x for load in loads for x in load.latencies_s]
    accepted = sum(load.accepted for load in loads)
    return {
        "edges": edges,
        "rate_per_edge": rate,  # None: each edge sends as fast as it is acknowledged
        "seconds": round(elapsed, 2),
        "jpeg_bytes": len(jpeg),
        "store": cfg.store.type,
        "samples_accepted": accepted,
        "samples_stored": stored,
        "samples_per_s": round(accepted / elapsed, 1),
        "held_back": sum(load.held_back for load in loads),
        "refused": sum(load.refused for load in loads),
        "ack_latency_ms_median": None if not latencies else round(1000 * statistics.median(latencies), 2),
        "ack_latency_ms_p99": None if not latencies else round(1000 * float(np.percentile(latencies, 99)), 2),
        "per_edge_accepted_min": min((load.accepted for load in loads), default=0),
        "errors": [e for load in loads for e in load.errors][:10],
    }
