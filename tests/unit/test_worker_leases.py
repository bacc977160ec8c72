"""The worker under leases: fencing before registering, resuming from a checkpoint, heartbeats.

Training and scoring are replaced by known outcomes (as in test_worker_decisions); the store is
the in-process one, whose lease semantics the contract tests show equal to Redis's. The real
thing, with worker processes, SIGKILL and Redis, is tests/integration/test_worker_failover.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cloud_trainer.worker as worker_module
from cloud_trainer.checkpoints import JobCheckpoints, JobPlan
from cloud_trainer.lease import LeaseKeeper, LeaseLost
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import MemoryStore
from cloud_trainer.training import FineTuneResult
from cloud_trainer.worker import Preempted, Refreshing, TrainingWorker
from edgesync.config import TrainingConfig
from edgesync.student import StudentModel
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob
from edgesync_bench.lockstep import Abandoned, LockstepJob

EDGE = "cam-1"
CLASSES = ["person", "car"]
EPOCHS = 5


def _model(seed: int) -> StudentModel:
    torch.manual_seed(seed)
    return StudentModel.fresh(CLASSES, 64)


class Setup:
    """A store with 10 labelled samples, a registry holding the edge's v1, and a worker factory."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = MemoryStore()
        self.registry = ModelRegistry(tmp_path / "registry")
        self.checkpoints = JobCheckpoints(tmp_path / "checkpoints")
        self.base, self.candidate = _model(1), _model(2)
        data, _ = self.base.encode()
        self.registry.register(EDGE, data, self.base.manifest(data))
        self.store.upsert_edge(EdgeInfo(edge_id=EDGE, class_names=CLASSES))
        jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
        for i in range(10):
            self.store.add_sample(StoredSample(f"s{i}", EDGE, float(i), float(i), 1, 0.5, i, [], 64, 64), jpeg)
            self.store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
        self.calls: list[dict] = []
        self.tmp_path = tmp_path
        monkeypatch.setattr(worker_module, "fine_tune", self._fine_tune)
        monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: 0.5)

    def _fine_tune(self, start, train, val, cfg, workdir, *, epochs, on_weights=None, **kw) -> FineTuneResult:
        """Record what it was asked; report each epoch's weights as the real one does."""
        self.calls.append({"start": start.state_dict(), "train": len(train), "epochs": epochs})
        for epoch in range(1, epochs + 1):
            if on_weights is not None:
                on_weights(epoch, self.candidate.state_dict())
        return FineTuneResult(self.candidate, epochs, len(train))

    def second_edge(self, edge_id: str = "cam-2") -> str:
        """Another edge with its own v1 and 10 labelled samples."""
        self.store.upsert_edge(EdgeInfo(edge_id=edge_id, class_names=CLASSES))
        data, _ = self.base.encode()
        self.registry.register(edge_id, data, self.base.manifest(data))
        jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
        for i in range(10):
            self.store.add_sample(StoredSample(f"o{i}", edge_id, float(i), float(i), 1, 0.5, i, [], 64, 64), jpeg)
            self.store.set_labels(edge_id, f"o{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
        return edge_id

    def worker(self, worker_id: str = "w1") -> TrainingWorker:
        # pre-emption's mechanics under the plain rule (a job ranked preempt_ratio times higher takes
        # the worker, the pre-empted job pauses to resume); the tests of preempt_by "gain_rate" and of
        # preempt_delivers, both on by default, turn them on
        cfg = TrainingConfig(
            min_heldout=2,
            min_fresh=4,
            epochs=EPOCHS,
            tolerance=1.0,
            fallback_to_first=False,
            patience=0,
            preempt_by="priority",
            preempt_delivers=False,
        )
        return TrainingWorker(
            self.store, self.registry, cfg, worker_id, workdir=self.tmp_path, lease_s=5.0, checkpoints=self.checkpoints
        )

    def claim(self, worker_id: str = "w1", lease_s: float = 5.0) -> TrainingJob:
        job = self.store.claim_job(worker_id, 0.0, lease_s=lease_s)
        assert job is not None
        return job


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    s = Setup(tmp_path, monkeypatch)
    s.store.put_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1, predicted_gain=0.3))
    return s


def test_a_claimed_job_runs_checkpoints_every_epoch_and_finishes_with_both_gains(setup: Setup) -> None:
    job = setup.worker().process(setup.claim())
    assert (job.status, job.result_version) == ("done", 2)
    assert setup.calls[0]["epochs"] == EPOCHS
    # the profiler's prediction (a flat held-out curve: no gain) replaces the manager's queued bound
    assert (job.predicted_gain, job.achieved_gain, job.metrics["queued_gain"]) == (0.0, 0.0, 0.3)
    assert job.metrics["resumed_from_epoch"] == 0 and job.metrics["epochs"] == EPOCHS
    stored = setup.store.get_job("job-1")
    assert stored.status == "done" and stored.result_version == 2
    assert setup.checkpoints.load("job-1") is None, "a finished job's checkpoint is removed"


def test_a_taken_over_job_resumes_from_its_checkpoint_with_the_remaining_epochs(setup: Setup) -> None:
    plan = JobPlan(base_version=1, epochs_total=EPOCHS, train=["s1", "s2", "s3", "s5"], held=["s4", "s6"], replay=[])
    plan.epochs_done = 2
    saved = _model(7).state_dict()
    setup.checkpoints.save("job-1", plan, saved)
    setup.claim("w1", lease_s=0.05)
    time.sleep(0.1)  # w1 died after epoch 2
    job = setup.worker("w2").process(setup.claim("w2"))

    (call,) = setup.calls
    assert call["epochs"] == EPOCHS - 2 and call["train"] == 4  # the plan's samples, the rest of its epochs
    assert all(torch.equal(call["start"][k], saved[k]) for k in saved)  # from the checkpoint's weights
    assert (job.status, job.result_version, job.attempts, job.worker_id) == ("done", 2, 2, "w2")
    assert job.metrics["resumed_from_epoch"] == 2 and job.metrics["epochs"] == EPOCHS


def test_a_checkpoint_from_an_older_model_is_not_resumed(setup: Setup) -> None:
    moved_on = _model(8)
    data, _ = moved_on.encode()
    setup.registry.register(EDGE, data, moved_on.manifest(data, parent=1))  # the edge moved on to v2
    plan = JobPlan(base_version=1, epochs_total=EPOCHS, train=["s1", "s2", "s3"], held=["s4"], replay=[])
    plan.epochs_done = 3
    setup.checkpoints.save("job-1", plan, _model(7).state_dict())
    job = setup.worker().process(setup.claim())
    assert setup.calls[0]["epochs"] == EPOCHS and job.metrics["resumed_from_epoch"] == 0
    assert job.result_version == 3


def test_a_job_an_earlier_claim_registered_is_not_registered_again(setup: Setup) -> None:
    setup.checkpoints.record_result("job-1", 2, {"gain": 0.25})
    data, _ = setup.candidate.encode()
    setup.registry.register(EDGE, data, setup.candidate.manifest(data, parent=1))  # then that claim died
    job = setup.worker("w2").process(setup.claim("w2"))
    assert (job.status, job.result_version, job.achieved_gain) == ("done", 2, 0.25)
    assert setup.calls == [] and setup.registry.latest_version(EDGE) == 2


def test_a_worker_whose_job_was_taken_over_registers_nothing_and_writes_nothing(setup: Setup) -> None:
    stale = setup.claim("w1", lease_s=0.05)
    time.sleep(0.1)
    setup.claim("w2")  # w1 was presumed dead; it comes back and finishes training
    job = setup.worker("w1").process(stale)
    assert job.status == "running"  # nothing written back
    assert setup.registry.latest_version(EDGE) == 1, "the fence must stop the registration"
    current = setup.store.get_job("job-1")
    assert (current.worker_id, current.status) == ("w2", "running")


def test_a_job_not_ready_goes_back_to_the_queue_and_releases_its_edge(setup: Setup) -> None:
    setup.store.put_job(TrainingJob("job-2", "cam-2", 2.0, 0.0, 1))
    setup.store.upsert_edge(EdgeInfo(edge_id="cam-2", class_names=CLASSES))
    job = setup.worker().process(setup.claim())  # cam-2 has no samples yet
    assert job.job_id == "job-2" and job.status == "queued"
    assert setup.store.queued_job_for("cam-2") is not None
    again = setup.claim("w2")  # cam-2's lease was released with it: claimable at once
    assert (again.job_id, again.attempts) == ("job-2", 2)


def test_the_heartbeat_notices_a_lost_lease_and_the_fence_refuses(setup: Setup) -> None:
    job = setup.claim("w1", lease_s=0.3)
    with LeaseKeeper(setup.store, job, 0.3) as keeper:
        time.sleep(0.2)
        keeper.check()  # still held: renewed by the heartbeat
        taken = setup.store.get_job("job-1")
        taken.status = "done"
        setup.store.update_job(taken)  # someone else ended it
        deadline = time.monotonic() + 2.0
        while not keeper.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(LeaseLost, match="job-1"):
            keeper.check()
        with pytest.raises(LeaseLost):
            keeper.fence()


def _drift_in_first_epoch(setup: Setup, other: str, priority: float = 3.0, gain: float | None = None) -> None:
    """During job-1's first epoch a new drift on `other` queues a job worth 3x (or `priority`),
    predicting `gain`."""
    real_fine_tune = setup._fine_tune

    def drift_arrives(start, train, val, cfg, workdir, *, epochs, on_weights=None, **kw):
        if not setup.calls:
            setup.store.put_job(TrainingJob("job-2", other, priority, 1.0, 1, predicted_gain=gain))
        return real_fine_tune(start, train, val, cfg, workdir, epochs=epochs, on_weights=on_weights, **kw)

    worker_module.fine_tune = drift_arrives  # monkeypatch in the fixture restores it


def test_a_much_more_valuable_job_pre_empts_at_an_epoch_boundary_and_the_first_resumes_later(
    setup: Setup,
) -> None:
    other = setup.second_edge()
    worker = setup.worker()
    _drift_in_first_epoch(setup, other)
    first = worker.process(setup.claim())
    assert first.status == "queued" and "pre-empted after epoch 1 by job job-2" in first.error
    assert setup.store.get_job("job-1").status == "queued"
    assert setup.checkpoints.load("job-1").plan.epochs_done == 1  # its work so far is kept

    second = worker.process(setup.claim())  # the worker serves the valuable job first
    assert (second.job_id, second.status) == ("job-2", "done")
    resumed = worker.process(setup.claim())
    assert (resumed.job_id, resumed.status, resumed.attempts) == ("job-1", "done", 2)
    assert resumed.metrics["resumed_from_epoch"] == 1 and resumed.metrics["epochs"] == EPOCHS
    assert [c["epochs"] for c in setup.calls] == [EPOCHS, EPOCHS, EPOCHS - 1]


@pytest.mark.parametrize("won", [True, False])
def test_with_preempt_delivers_a_pre_empted_job_that_has_won_is_sent_and_one_that_has_not_pauses(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, won: bool
) -> None:
    other = setup.second_edge()
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"preempt_delivers": True})
    scores = iter([0.5])  # the edge's model; every epoch after it scores 0.7, or 0.5 as well
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: next(scores, 0.7 if won else 0.5))
    _drift_in_first_epoch(setup, other)
    first = worker.process(setup.claim())
    if won:  # judged and sent after its one epoch; the worker is free for job-2 at once
        assert (first.job_id, first.status, first.result_version) == ("job-1", "done", 2)
        assert first.metrics["epochs"] == 1 and first.metrics["delivered_on_preemption"] == 1.0
        assert setup.checkpoints.load("job-1") is None
    else:  # nothing to send yet: it waits to resume from its checkpoint, as without the setting
        assert first.status == "queued" and "pre-empted after epoch 1 by job job-2" in first.error
        assert setup.checkpoints.load("job-1").plan.epochs_done == 1
    assert worker.process(setup.claim()).job_id == "job-2"


def test_without_preempt_delivers_rising_a_pre_empted_job_still_climbing_pauses(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its one epoch raised held-out mAP50 from 0.5 to 0.7: sent with the default, paused to resume
    from its checkpoint with training.preempt_delivers_rising off."""
    other = setup.second_edge()
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"preempt_delivers": True, "preempt_delivers_rising": False})
    scores = iter([0.5])
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: next(scores, 0.7))
    _drift_in_first_epoch(setup, other)
    first = worker.process(setup.claim())
    assert first.status == "queued" and "pre-empted after epoch 1 by job job-2" in first.error
    assert setup.checkpoints.load("job-1").plan.epochs_done == 1
    assert worker.process(setup.claim()).job_id == "job-2"


@pytest.mark.parametrize("climbing", [True, False])
def test_by_gain_rate_a_job_past_its_plateau_yields_and_a_climbing_one_does_not(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, climbing: bool
) -> None:
    """training.preempt_by gain_rate: job-2 ranks above job-1, by less than preempt_ratio, and
    predicts 0.2 over its 5 epochs of 8 images. It takes the worker once job-1's held-out curve
    predicts less gain to come per image-epoch: after job-1's second epoch when the curve is
    flat; never while it climbs (it predicts 0.3 more over 3 epochs after its second)."""
    other = setup.second_edge()
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"preempt_by": "gain_rate"})
    curve = [0.5, 0.55, 0.65, 0.75, 0.85, 0.95] if climbing else [0.5, 0.6, 0.6]  # before, then each epoch
    scores = iter(curve)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: next(scores, curve[-1]))
    _drift_in_first_epoch(setup, other, priority=1.5, gain=0.2)
    first = worker.process(setup.claim())
    if climbing:
        assert (first.status, first.metrics["epochs"]) == ("done", EPOCHS)
        assert setup.store.get_job("job-2").status == "queued"
    else:
        assert first.status == "queued" and "pre-empted after epoch 2 by job job-2" in first.error
        assert "its predicted gain per image-epoch beats this job's 0" in first.error
        assert worker.process(setup.claim()).job_id == "job-2"


def test_a_job_of_similar_value_does_not_pre_empt(setup: Setup) -> None:
    claimed = setup.claim()
    setup.store.put_job(TrainingJob("job-2", "cam-2", 1.5, 1.0, 1))  # 1.5x: under the 2x margin
    job = setup.worker().process(claimed)
    assert (job.job_id, job.status) == ("job-1", "done")
    assert setup.store.get_job("job-2").status == "queued"


def _scene_changes_in_first_epoch(setup: Setup, job_of_another_edge: bool) -> None:
    """During job-1's first epoch cam-1 moves to a new scene, and maybe cam-2 queues a job worth
    half of job-1's (too little to pre-empt a job for a live scene)."""
    other = setup.second_edge()
    real_fine_tune = setup._fine_tune

    def scene_changes(start, train, val, cfg, workdir, *, epochs, on_weights=None, **kw):
        if not setup.calls:
            setup.store.set_meta(EDGE, scene_changed_at=100.0)
            if job_of_another_edge:
                setup.store.put_job(TrainingJob("job-2", other, 0.5, 1.0, 1))
        return real_fine_tune(start, train, val, cfg, workdir, epochs=epochs, on_weights=on_weights, **kw)

    worker_module.fine_tune = scene_changes  # monkeypatch in the fixture restores it


@pytest.mark.parametrize("another_edge_waits", [True, False])
def test_a_job_whose_edge_left_its_scene_stops_for_any_job_of_another_edge(
    setup: Setup, another_edge_waits: bool
) -> None:
    _scene_changes_in_first_epoch(setup, another_edge_waits)
    worker = setup.worker()
    first = worker.process(setup.claim())
    assert first.status == "done", "stopped and judged as it is, not queued to resume for a scene that is gone"
    if another_edge_waits:
        assert first.metrics["epochs"] == 1 and first.metrics["scene_left_at"] == 100.0
        assert setup.checkpoints.load("job-1") is None
        assert worker.process(setup.claim()).job_id == "job-2"
    else:  # nobody else to serve: what it learns may still be judged good for the new scene
        assert first.metrics["epochs"] == EPOCHS and "scene_left_at" not in first.metrics


def test_without_pre_emption_a_job_whose_edge_left_its_scene_runs_to_its_end(setup: Setup) -> None:
    """As under the benchmark's fifo and fair orders (preempt_ratio 0)."""
    _scene_changes_in_first_epoch(setup, job_of_another_edge=True)
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"preempt_ratio": 0.0})
    job = worker.process(setup.claim())
    assert (job.job_id, job.metrics["epochs"]) == ("job-1", EPOCHS) and "scene_left_at" not in job.metrics


def test_a_valuable_job_without_frames_of_its_scene_does_not_pre_empt(setup: Setup) -> None:
    claimed = setup.claim()
    setup.store.upsert_edge(EdgeInfo(edge_id="cam-2", class_names=CLASSES))
    setup.store.put_job(TrainingJob("job-2", "cam-2", 3.0, 1.0, 1))  # worth 3x, but nothing to train on
    job = setup.worker().process(claimed)
    assert (job.job_id, job.status) == ("job-1", "done")


def test_a_valuable_job_the_admits_hook_refuses_does_not_pre_empt(setup: Setup) -> None:
    other = setup.second_edge()
    claimed = setup.claim()
    setup.store.put_job(TrainingJob("job-2", other, 3.0, 1.0, 1))
    asked: list[str] = []
    worker = setup.worker()
    drawn: list[int] = []

    def admits(job: TrainingJob, selection) -> bool:  # e.g. the benchmark's budget is spent
        asked.append(job.job_id)
        drawn.append(sum(map(len, selection)))
        return False

    worker.admits = admits
    job = worker.process(claimed)
    assert (job.job_id, job.status) == ("job-1", "done")
    assert asked == ["job-2"] * (EPOCHS - 1)  # asked at every boundary but the last
    assert all(drawn)  # with the samples the worker drew for the job, so it need not draw them again


def test_the_profiler_stops_a_job_whose_held_out_score_does_not_improve(setup: Setup) -> None:
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"patience": 2})
    job = worker.process(setup.claim())  # evaluate() is pinned at 0.5: no epoch ever improves
    assert job.status == "done"
    assert job.metrics["epochs"] == 2 and job.metrics["heldout_evaluations"] == 2
    assert (job.metrics["map50_epoch_1"], job.metrics["map50_epoch_2"]) == (0.5, 0.5)
    assert job.predicted_gain == 0.0 and job.metrics["queued_gain"] == 0.3  # the profiler's, then the manager's


def _scene_grows_in_first_epoch(setup: Setup, n: int, scene_start: float = 0.0) -> None:
    """During job-1's first epoch n more labelled frames of the edge arrive (of the scene from scene_start)."""
    real_fine_tune = setup._fine_tune
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()

    def frames_arrive(start, train, val, cfg, workdir, *, epochs, on_weights=None, **kw):
        if not setup.calls:
            for i in range(10, 10 + n):
                sample = StoredSample(f"s{i}", EDGE, float(i), float(i), 1, 0.5, i, [], 64, 64, scene_start=scene_start)
                setup.store.add_sample(sample, jpeg)
                setup.store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
        return real_fine_tune(start, train, val, cfg, workdir, epochs=epochs, on_weights=on_weights, **kw)

    worker_module.fine_tune = frames_arrive  # monkeypatch in the fixture restores it


def _refreshing_worker(setup: Setup) -> TrainingWorker:
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"refresh": True})
    return worker


def test_with_refresh_a_job_whose_scene_doubled_yields_and_resumes_on_all_its_frames(setup: Setup) -> None:
    worker = _refreshing_worker(setup)
    _scene_grows_in_first_epoch(setup, 10)  # 10 frames selected (8 train, 2 held out), 20 after epoch 1
    first = worker.process(setup.claim())
    assert first.status == "queued" and "yields after epoch 1: its scene has 20 labelled frames" in first.error
    plan = setup.checkpoints.load("job-1").plan
    assert plan.epochs_done == 1 and len(plan.train) == 8 and len(plan.held) == 2

    resumed = worker.process(setup.claim())
    assert (resumed.status, resumed.result_version) == ("done", 2)
    assert [c["train"] for c in setup.calls] == [8, 16]  # the 10 new frames: 8 train, 2 held out
    assert [c["epochs"] for c in setup.calls] == [EPOCHS, EPOCHS - 1]
    assert resumed.metrics["refresh_added"] == 10 and resumed.metrics["heldout_samples"] == 4
    assert resumed.metrics["train_samples"] == 16 and resumed.metrics["epochs"] == EPOCHS


def test_a_refreshed_job_never_trains_on_a_frame_that_judged_it_nor_is_judged_on_one_it_trained_on(
    setup: Setup,
) -> None:
    worker = _refreshing_worker(setup)
    _scene_grows_in_first_epoch(setup, 10)
    worker.process(setup.claim())
    before = setup.checkpoints.load("job-1").plan
    seen = []
    real_save = setup.checkpoints.save

    def save(job_id, plan, *args, **kw):  # the resumed claim's plan, as it checkpoints it
        seen.append((list(plan.train), list(plan.held)))
        real_save(job_id, plan, *args, **kw)

    setup.checkpoints.save = save
    worker.process(setup.claim())
    train, held = seen[-1]
    assert set(before.train) <= set(train) and set(before.held) <= set(held)
    assert not set(train) & set(held) and len(train) + len(held) == 20


@pytest.mark.parametrize("arriving", ["another scene's", "too few"])
def test_frames_of_another_scene_or_too_few_do_not_make_a_job_yield(setup: Setup, arriving: str) -> None:
    worker = _refreshing_worker(setup)
    if arriving == "too few":  # 9 more of its scene: 19, not twice its 10
        _scene_grows_in_first_epoch(setup, 9)
    else:  # 10 more of the scene the edge moved on to at t=100: job-1's own scene did not grow
        _scene_grows_in_first_epoch(setup, 10, scene_start=100.0)
    job = worker.process(setup.claim())
    assert (job.status, job.result_version) == ("done", 2) and len(setup.calls) == 1
    assert "refresh_added" not in job.metrics


def test_with_refresh_a_job_pre_empted_by_another_takes_in_its_scene_s_new_frames_when_it_resumes(
    setup: Setup,
) -> None:
    other = setup.second_edge()
    worker = _refreshing_worker(setup)
    _drift_in_first_epoch(setup, other)
    first = worker.process(setup.claim())
    assert isinstance(first, TrainingJob) and "pre-empted after epoch 1 by job job-2" in first.error
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    for i in range(10, 15):  # 5 more: not doubled, but they join when it resumes
        setup.store.add_sample(StoredSample(f"s{i}", EDGE, float(i), float(i), 1, 0.5, i, [], 64, 64), jpeg)
        setup.store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
    assert worker.process(setup.claim()).job_id == "job-2"
    resumed = worker.process(setup.claim())
    assert (resumed.job_id, resumed.status) == ("job-1", "done")
    assert resumed.metrics["refresh_added"] == 5 and setup.calls[-1]["train"] == 8 + 3  # 5 new: 3 train, 2 held


@pytest.mark.parametrize("arriving", [10, 1])
def test_with_later_jury_frames_after_a_job_s_window_judge_its_candidate(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, arriving: int
) -> None:
    """Held-out frames (from the job's window) put the candidate at 0.7 against 0.5; the frames
    that arrive while it trains put it at 0.3 against 0.6. With min_heldout (2) of those they
    decide, and it is not registered; one frame is too few, and the held-out frames decide."""
    late: set[str] = set()
    base = setup.base.state_dict()["model.0.conv.weight"].float()

    def scores(model, frames):  # the edge's model (as registered, in fp16) or the candidate
        later = all(f.name in late for f in frames)
        if torch.allclose(model.state_dict()["model.0.conv.weight"].float(), base, atol=1e-3):
            return 0.6 if later else 0.5
        return 0.3 if later else 0.7

    monkeypatch.setattr(worker_module, "evaluate", scores)
    worker = setup.worker()
    worker.cfg = worker.cfg.model_copy(update={"later_jury": True, "tolerance": 0.0})
    _scene_grows_in_first_epoch(setup, arriving)
    real_fine_tune = worker_module.fine_tune

    def train_and_note_late_frames(*args, **kw):
        result = real_fine_tune(*args, **kw)
        late.update(f"{s.seq:08d}" for s in setup.store.list_samples(EDGE, labelled=True) if int(s.sample_id[1:]) >= 10)
        return result

    worker_module.fine_tune = train_and_note_late_frames
    job = worker.process(setup.claim())
    assert job.status == "done"
    if arriving >= 2:
        assert not job.result_version and "on the 10 frames of its scene that arrived after" in job.error
        assert (job.metrics["map50_later_before"], job.metrics["map50_later_after"]) == (0.6, 0.3)
        assert job.metrics["later_frames"] == 10 and job.metrics["gain"] == pytest.approx(0.2)
    else:
        assert job.result_version == 2 and "later_frames" not in job.metrics


def test_refreshing_is_a_pre_emption_the_benchmark_and_the_worker_requeue_alike() -> None:
    job = TrainingJob("job-1", EDGE, 1.0, 0.0, 1)
    exc = Refreshing(job, 2, 10, 20)
    assert isinstance(exc, Preempted) and exc.by is job and "resumes from its checkpoint" in str(exc)


def _lockstep(setup: Setup, max_epochs: int = EPOCHS) -> LockstepJob:
    """The benchmark's way of running a claimed job: in its own thread, paused at each boundary."""
    worker = setup.worker()
    run = LockstepJob(worker, setup.claim(), max_epochs)
    worker.at_boundary = run.at_boundary
    return run


def test_a_lockstep_job_pauses_at_each_epoch_boundary_and_yields_to_a_job_queued_while_paused(setup: Setup) -> None:
    other = setup.second_edge()
    run = _lockstep(setup)
    run.start()
    assert (run.finished, run.epochs_done) == (False, 1)
    run.resume()
    assert (run.finished, run.epochs_done) == (False, 2)
    assert setup.checkpoints.load("job-1").plan.epochs_done == 2  # saved before pausing
    setup.store.put_job(TrainingJob("job-2", other, 3.0, 1.0, 1))  # a drift on cam-2 while job-1 waits
    run.resume()
    assert run.finished and isinstance(run.error, Preempted)
    assert "pre-empted after epoch 2 by job job-2" in str(run.error)
    assert setup.registry.latest_version(EDGE) == 1


def test_a_resumed_job_trains_at_most_max_epochs_more(setup: Setup) -> None:
    other = setup.second_edge()
    run = _lockstep(setup)
    run.start()
    setup.store.put_job(TrainingJob("job-2", other, 3.0, 1.0, 1))
    run.resume()
    assert isinstance(run.error, Preempted)
    run.job.status = "queued"
    setup.store.complete_job(run.job)  # back in the queue, as the simulation puts it
    assert setup.worker().process(setup.claim()).job_id == "job-2"
    resumed = _lockstep(setup, max_epochs=2)  # the budget affords two of the four epochs left
    resumed.start()
    while not resumed.finished:
        resumed.resume()
    assert resumed.error is None and resumed.outcome.status == "done"
    assert resumed.outcome.metrics["resumed_from_epoch"] == 1 and resumed.outcome.metrics["epochs"] == 3
    assert [c["epochs"] for c in setup.calls] == [EPOCHS, EPOCHS, 2]


def test_closing_a_paused_lockstep_job_ends_it_without_registering(setup: Setup) -> None:
    run = _lockstep(setup)
    run.start()
    run.close()
    assert run.finished and isinstance(run.error, Abandoned)
    assert setup.registry.latest_version(EDGE) == 1
    with pytest.raises(RuntimeError, match="has ended"):
        run.resume()


def test_a_resumed_job_ends_with_the_best_epoch_of_all_its_claims(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep: best over the whole job: a job pre-empted (or taken over) after its best epoch
    must not lose that epoch to a worse one of the claim that finishes it."""
    peak, later = _model(7), _model(8)
    names = {setup.base.encode()[1]: "base", peak.encode()[1]: "peak", later.encode()[1]: "later"}
    scores = {"base": 0.5, "peak": 0.9, "later": 0.6}
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[names[model.encode()[1]]])
    plan = JobPlan(base_version=1, epochs_total=EPOCHS, train=["s1", "s2", "s3", "s5"], held=["s4", "s6"], replay=[])
    plan.epochs_done, plan.best_epoch, plan.best_score = 3, 2, 0.9  # epoch 2 peaked, epoch 3 fell back
    setup.checkpoints.save("job-1", plan, later.state_dict(), best=peak.state_dict())
    assert setup.checkpoints.load("job-1").best_state is not None
    setup.candidate = later  # the claim that finishes the job trains no higher than 0.6
    job = setup.worker().process(setup.claim())

    registered = StudentModel.from_bytes(*setup.registry.load(EDGE, job.result_version)).encode()[1]
    assert names[registered] == "peak"
    assert job.metrics["kept_epoch"] == 2 and job.achieved_gain == pytest.approx(0.4)


def test_a_resumed_claim_goes_on_with_the_learning_rate_the_schedule_had_reached(setup: Setup) -> None:
    from cloud_trainer.training import resumed_rate

    asked = []
    real_fine_tune = setup._fine_tune

    def record(*args, resumed=None, **kw):
        asked.append(resumed)
        return real_fine_tune(*args, **kw)

    worker_module.fine_tune = record  # monkeypatch in the fixture restores it
    plan = JobPlan(base_version=1, epochs_total=EPOCHS, train=["s1", "s2", "s3", "s5"], held=["s4", "s6"], replay=[])
    plan.epochs_done = 3
    setup.checkpoints.save("job-1", plan, _model(7).state_dict())
    setup.worker().process(setup.claim())
    assert asked == [(3, EPOCHS)]
    assert resumed_rate(0, 10) == pytest.approx(1.0)
    assert resumed_rate(5, 10) == pytest.approx(0.505)  # ultralytics' linear schedule to lrf 0.01
    assert resumed_rate(10, 10) == pytest.approx(0.01)
