"""Fault injection on loopback: the link to the cloud is cut, or the cloud process is killed mid-burst
and restarted. Each ends with every sample the edge accepted stored exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import yaml

from cloud_trainer.app import CloudTrainer
from cloud_trainer.state import RedisStore
from edge_agent.spool import SampleSpool
from edge_agent.uploader import Uploader
from edgesync.config import CloudConfig, RetryConfig, parse_config
from edgesync.types import Sample
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EDGE = "cam-faults"
BURST = 200


class CuttableProxy:
    """A TCP forwarder on 127.0.0.1 whose link can be cut (every connection dropped, new ones
    refused at once) and restored, like a camera's uplink going down."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._sockets.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()


def _put(spool: SampleSpool, first: int, count: int) -> list[str]:
    ids = [f"s{i:03d}" for i in range(first, first + count)]
    for i, sample_id in enumerate(ids, start=first):
        assert spool.put(Sample(sample_id, EDGE, float(i), 1, _jpeg(), frame_index=i))
    return ids


def _wait(what: str, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _uploader(port: int, spool: SampleSpool) -> tuple[Uploader, threading.Event, threading.Thread]:
    stub = pb_grpc.EdgeSyncStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    _wait("the cloud to take the registration", lambda: _register(stub), 60)
    uploader = Uploader(stub, spool, RetryConfig(initial_s=0.05, max_s=0.5))
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    return uploader, stop, thread


def _register(stub: pb_grpc.EdgeSyncStub) -> bool:
    try:
        stub.Register(pb.RegisterRequest(edge_id=EDGE, class_names=["person"]), timeout=2)
        return True
    except grpc.RpcError:
        return False


def test_a_cut_link_loses_no_sample_and_duplicates_none(tmp_path: Path) -> None:
    cfg = parse_config(
        CloudConfig, {"listen": "127.0.0.1:0", "api": {"enabled": False}, "data_dir": str(tmp_path), "workers": 0}
    )
    cloud = CloudTrainer(cfg)
    proxy = CuttableProxy(cloud.start())
    spool = SampleSpool(tmp_path / "spill", max_items=4, max_spill_items=1000)
    uploader, stop, thread = _uploader(proxy.port, spool)
    try:
        expected = _put(spool, 0, 10)
        _wait("the first samples to arrive", lambda: cloud.store.count_samples(EDGE) >= 5, 30)
        proxy.cut()
        expected += _put(spool, 10, 20)  # the camera goes on while its link is down: spilled to disk
        time.sleep(3.0)  # the outage (a minute in the field; the mechanism is the same)
        assert spool.depth > 0 and spool.stats.spilled > 0
        proxy.restore()
        _wait("the spool to drain after the link came back", lambda: spool.depth == 0, 60)
        stored = sorted(s.sample_id for s in cloud.store.list_samples(EDGE))
    finally:
        stop.set()
        thread.join(timeout=10)
        proxy.close()
        cloud.stop()
    assert stored == sorted(expected)  # every sample, each once
    assert spool.stats.dropped == 0 and uploader.refused == 0


@pytest.fixture
def cloud_process(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[tuple[int, callable]]:
    """start() launches `edgesync cloud serve` on a fixed port with a Redis store; returns the process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "cloud.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "data_dir": str(tmp_path / "cloud"),
                "store": {"type": "redis", "url": redis_url, "prefix": redis_prefix},
                "workers": 0,
                "api": {"enabled": False},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = (tmp_path / f"cloud-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgesync.cli", "cloud", "serve", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        procs.append(proc)
        return proc

    try:
        yield port, start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_a_cloud_killed_mid_burst_and_restarted_stores_every_sample_once(
    cloud_process, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    port, start = cloud_process
    first = start()
    spool = SampleSpool(tmp_path / "spill", max_items=4, max_spill_items=1000)
    uploader, stop, thread = _uploader(port, spool)
    try:
        with RedisStore(redis_url, redis_prefix) as store:
            # 200 samples: beyond the first 60 the cloud's rate limit (20/s) stretches the burst over
            # seconds, so the kill lands in the middle of it however fast loopback is
            expected = _put(spool, 0, BURST)
            _wait("part of the burst to arrive", lambda: store.count_samples(EDGE) >= 10, 60)
            first.send_signal(signal.SIGKILL)  # no warning, mid-stream
            first.wait(timeout=10)
            assert store.count_samples(EDGE) < BURST, "the burst finished before the kill"
            start()  # the same address, the same Redis
            _wait("the spool to drain into the restarted cloud", lambda: spool.depth == 0, 90)
            stored = sorted(s.sample_id for s in store.list_samples(EDGE))
            received = store.get_edge(EDGE).samples_received
    finally:
        stop.set()
        thread.join(timeout=10)
    assert stored == sorted(expected)  # every sample, each once (a resent one is recognised)
    assert received == BURST and spool.stats.dropped == 0


def _redis_server(workdir: Path, port: int) -> subprocess.Popen:
    """A private redis-server that keeps its data across restarts (append-only file in workdir)."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs the redis-server binary to restart a private Redis")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait("redis to answer", lambda: _pings(port), 15)
    return proc


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_a_redis_restart_loses_no_sample(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        redis_port = sock.getsockname()[1]
    (tmp_path / "redis").mkdir()
    server = _redis_server(tmp_path / "redis", redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0"
    cfg = parse_config(
        CloudConfig,
        {"listen": "127.0.0.1:0", "api": {"enabled": False}, "data_dir": str(tmp_path / "cloud"), "workers": 0,
         "store": {"type": "redis", "url": url, "prefix": "faults"}},
    )  # fmt: skip
    cloud = CloudTrainer(cfg)
    port = cloud.start()
    spool = SampleSpool(tmp_path / "spill", max_items=4, max_spill_items=1000)
    uploader, stop, thread = _uploader(port, spool)
    try:
        expected = _put(spool, 0, 10)
        _wait("the first samples to arrive", lambda: cloud.store.count_samples(EDGE) == 10, 30)
        server.terminate()  # a clean Redis restart: it writes its append-only file and exits
        server.wait(timeout=10)
        expected += _put(spool, 10, 10)  # uploads meanwhile are held back, not lost
        _wait("an upload to be held back while Redis is down", lambda: uploader.held_back > 0, 30)
        server = _redis_server(tmp_path / "redis", redis_port)
        _wait("the spool to drain after Redis came back", lambda: spool.depth == 0, 60)
        stored = sorted(s.sample_id for s in cloud.store.list_samples(EDGE))
        # the cloud's own threads came through too: the teacher labels what arrived after the restart
        _wait("labelling to resume", lambda: cloud.store.count_samples(EDGE, labelled=True) >= 15, 60)
        assert all(t.is_alive() for t in cloud._threads)
    finally:
        stop.set()
        thread.join(timeout=10)
        cloud.stop()
        server.terminate()
        server.wait(timeout=10)
    assert stored == sorted(expected)
    assert uploader.refused == 0 and spool.stats.dropped == 0
