"""Two real `edgesync cloud worker` processes on a real Redis; the one training a job is SIGKILLed.

The other takes the job over once the dead worker's lease lapses, resumes it from the last
epoch's checkpoint, and finishes it: one new model version, every sample still stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from cloud_trainer.checkpoints import JobCheckpoints
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import RedisStore
from edgesync.student import StudentModel
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob

pytestmark = pytest.mark.integration

EDGE = "cam-failover"
CLASSES = ["person", "car"]
IMGSZ = 64  # tiny: an epoch takes a fraction of a second on 2 cores
SAMPLES = 16
EPOCHS = 6
LEASE_S = 3.0
T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def _labelled_samples(store: RedisStore) -> None:
    """SAMPLES synthetic frames, each with one bright box the "teacher" labelled as a person."""
    rng = np.random.default_rng(0)
    for i in range(SAMPLES):
        image = rng.integers(40, 80, (96, 128, 3), dtype=np.uint8)
        x, y = int(rng.integers(5, 80)), int(rng.integers(5, 50))
        image[y : y + 40, x : x + 30] = 220
        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        sample = StoredSample(f"s{i:03d}", EDGE, T0 + i, T0 + i, 1, 0.5, i, [], 128, 96)
        assert store.add_sample(sample, jpeg)
        store.set_labels(EDGE, sample.sample_id, [Detection(x, y, x + 30, y + 40, 0, 0.9)])


def _config(tmp_path: Path, redis_url: str, prefix: str) -> Path:
    cfg = {
        "data_dir": str(tmp_path / "cloud"),
        "store": {"type": "redis", "url": redis_url, "prefix": prefix},
        "training": {
            "epochs": EPOCHS,
            "imgsz": IMGSZ,
            "batch": 4,
            "nominal_batch": 4,  # an optimizer step every batch: each epoch changes the weights
            "max_fresh": SAMPLES,
            "min_fresh": 4,
            "min_heldout": 2,
            "tolerance": 1.0,  # accept whatever it trains: the test counts versions, not accuracy
            "fallback_to_first": False,
            "patience": 0,  # the tiny model's held-out score never improves: run every epoch
        },
        "lease_s": LEASE_S,
    }
    path = tmp_path / "cloud.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def workers(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[tuple[Path, dict[str, subprocess.Popen]]]:
    """Two worker processes ("w-a", "w-b") sharing one Redis prefix and one data dir."""
    config = _config(tmp_path, redis_url, redis_prefix)
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),  # a killed worker's scratch files stay in tmp_path
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    procs: dict[str, subprocess.Popen] = {}
    for name in ("w-a", "w-b"):
        log = (tmp_path / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "edgesync.cli", "cloud", "worker", "-c", str(config), "--worker-id", name],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
    try:
        yield tmp_path, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(tmp_path.glob("w-*.log")))


def _wait_for(what: str, check, timeout_s: float, tmp_path: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{_logs(tmp_path)}")


def test_killed_workers_job_is_resumed_by_the_other_and_registered_once(
    workers: tuple[Path, dict[str, subprocess.Popen]], redis_url: str, redis_prefix: str
) -> None:
    tmp_path, procs = workers
    data_dir = tmp_path / "cloud"
    registry = ModelRegistry(data_dir / "registry")
    base = StudentModel.fresh(CLASSES, IMGSZ)
    data, _ = base.encode()
    registry.register(EDGE, data, base.manifest(data))
    checkpoints = JobCheckpoints(data_dir / "checkpoints")
    with RedisStore(redis_url, redis_prefix) as store:
        store.upsert_edge(EdgeInfo(edge_id=EDGE, class_names=CLASSES, model_version=1))
        _labelled_samples(store)
        job = TrainingJob("job-1", EDGE, priority=1.0, created=time.time(), base_version=1, predicted_gain=0.5)
        store.put_job(job)

        # the worker that claimed the job gets through an epoch, then is killed without warning
        owner = _wait_for("a worker to claim the job", lambda: store.get_job("job-1").worker_id, 90, tmp_path)
        _wait_for("a checkpoint", lambda: checkpoints.epochs_done("job-1") >= 1, 60, tmp_path)
        procs[owner].send_signal(signal.SIGKILL)
        procs[owner].wait(timeout=10)
        assert store.get_job("job-1").status == "running", "the job finished before the kill: raise EPOCHS"
        killed_after = checkpoints.epochs_done("job-1")

        done = _wait_for(
            "the other worker to finish the job",
            lambda: (j := store.get_job("job-1")).status in ("done", "failed") and j,
            60,
            tmp_path,
        )
        survivor = next(name for name in procs if name != owner)
        assert done.status == "done", f"{done.error}\n{_logs(tmp_path)}"
        assert (done.worker_id, done.attempts) == (survivor, 2)
        assert done.metrics["resumed_from_epoch"] >= killed_after >= 1  # resumed, not restarted
        assert done.metrics["epochs"] == EPOCHS
        assert done.result_version == 2
        assert [m.version for m in registry.versions(EDGE)] == [1, 2]  # exactly one new version
        assert store.count_samples(EDGE) == SAMPLES  # no sample lost
        assert store.count_samples(EDGE, labelled=True) == SAMPLES
        assert done.metrics["queued_gain"] == 0.5  # the manager's, before the profiler's
        assert done.predicted_gain is not None and done.achieved_gain is not None
        # the worker removes the checkpoint right after it writes the outcome (never before: a lost
        # lease leaves it to the worker that took the job over), so a loaded machine can show "done" first
        _wait_for(
            "the finished job's checkpoint to be removed",
            lambda: checkpoints.epochs_done("job-1") == 0,
            10,
            tmp_path,
        )

    procs[survivor].send_signal(signal.SIGTERM)  # a graceful stop: no job under way, so it exits
    assert procs[survivor].wait(timeout=30) == 0
    survivor_log = (tmp_path / f"{survivor}.log").read_text()
    assert "resuming after epoch" in survivor_log
    assert f"predicted gain {done.predicted_gain:+.3f}, achieved gain" in survivor_log
