"""The benchmark's training budget: a job waiting for it is sized on the frames it will train on."""

from __future__ import annotations

from cloud_trainer.state import MemoryStore
from edgesync.types import TrainingJob
from edgesync_bench.simulation import Simulation


def _waiting(store: MemoryStore, jobs: dict[str, float]) -> Simulation:
    """A simulation whose worker waits until t=50 for the budget of the queued jobs (id -> budget),
    as _maybe_start_job leaves it after claiming a job the budget does not afford yet."""
    sim = Simulation.__new__(Simulation)
    sim.store = store
    sim._wanted = dict(jobs)
    sim._training_job = False
    sim._worker_free_at = 50.0
    return sim


def test_a_scene_change_sizes_the_edges_waiting_job_afresh_and_wakes_the_worker() -> None:
    store = MemoryStore()
    store.put_job(TrainingJob("cam-1-job1", "cam-1", priority=1.0, created=10.0, base_version=1))
    store.put_job(TrainingJob("cam-2-job1", "cam-2", priority=1.0, created=11.0, base_version=1))
    sim = _waiting(store, {"cam-1-job1": 20.0, "cam-2-job1": 30.0})

    sim._resize_for_new_scene("cam-1", 25.0)

    assert sim._wanted == {"cam-2-job1": 30.0}  # the other camera's job keeps its size
    assert sim._worker_free_at == 25.0  # claims again now, not at the old scene's retry time


def test_a_scene_change_leaves_a_running_job_and_jobs_never_claimed_alone() -> None:
    store = MemoryStore()
    store.put_job(TrainingJob("cam-1-job1", "cam-1", priority=1.0, created=10.0, base_version=1))
    sim = _waiting(store, {})  # queued, never claimed: nothing was sized yet
    sim._resize_for_new_scene("cam-1", 25.0)
    assert sim._worker_free_at == 50.0

    sim = _waiting(store, {"cam-1-job1": 20.0})
    sim._training_job = True  # the worker is busy with another job until t=50
    sim._resize_for_new_scene("cam-1", 25.0)
    assert sim._wanted == {}
    assert sim._worker_free_at == 50.0
