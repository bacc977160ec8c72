"""Training manager (when to queue, how to rank) and the worker's fresh/held-out split."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_trainer.manager import TrainingManager, job_priority, scene_yield
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import MemoryStore
from cloud_trainer.worker import TrainingWorker, split_fresh
from edgesync.config import ManagerConfig, TrainingConfig
from edgesync.types import Detection, EdgeInfo, ModelManifest, SceneChange, StoredSample, TrainingJob
from edgesync.weights import sha256_hex

CLASSES = ["person", "car"]
T0 = 1_700_000_000.0
BOX = Detection(10.0, 10.0, 50.0, 80.0, 0, 0.9)


def stored(edge_id: str, i: int, seq: int = 0) -> StoredSample:
    return StoredSample(
        sample_id=f"s{i:05d}",
        edge_id=edge_id,
        capture_time=T0 + i,
        received_time=T0 + i,
        model_version=1,
        score=0.5,
        frame_index=i,
        student=[],
        width=64,
        height=48,
        seq=seq,
    )


# ---------------------------------------------------------------- job priority

CFG = ManagerConfig(min_new_samples=40, staleness_half_s=60.0)


@pytest.mark.parametrize("staleness_s", [0.0, 30.0, 600.0])
def test_priority_rises_as_live_accuracy_falls(staleness_s: float) -> None:
    values = [job_priority(acc, staleness_s, 40, CFG) for acc in (1.0, 0.8, 0.5, 0.2, 0.0)]
    assert values == sorted(values)
    assert values[0] == 0.0  # a perfect edge has nothing to gain
    assert values[-1] > values[0]


@pytest.mark.parametrize("live_map50", [0.0, 0.3, 0.9])
def test_priority_rises_with_staleness(live_map50: float) -> None:
    values = [job_priority(live_map50, s, 40, CFG) for s in (0.0, 10.0, 60.0, 300.0, 3600.0)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_priority_rises_with_new_samples_up_to_the_threshold() -> None:
    values = [job_priority(0.5, 60.0, n, CFG) for n in (0, 10, 20, 40)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert job_priority(0.5, 60.0, 400, CFG) == values[-1]


@settings(database=None)
@given(
    acc=st.floats(-1.0, 2.0),
    staleness=st.floats(-100.0, 1e6),
    new=st.integers(0, 10_000),
)
def test_priority_stays_between_zero_and_one(acc: float, staleness: float, new: int) -> None:
    assert 0.0 <= job_priority(acc, staleness, new, CFG) <= 1.0


@settings(database=None)
@given(
    acc=st.floats(0.0, 1.0),
    more_acc=st.floats(0.0, 1.0),
    stale=st.floats(0.0, 1e4),
    more_stale=st.floats(0.0, 1e4),
)
def test_priority_is_monotone_in_gain_and_staleness(
    acc: float, more_acc: float, stale: float, more_stale: float
) -> None:
    low_acc, high_acc = sorted((acc, more_acc))
    fresh, old = sorted((stale, more_stale))
    assert job_priority(low_acc, fresh, 40, CFG) >= job_priority(high_acc, fresh, 40, CFG)
    assert job_priority(low_acc, old, 40, CFG) >= job_priority(low_acc, fresh, 40, CFG)


# ---------------------------------------------------------------- training manager


class Cloud:
    """A memory store, a real registry with one model for cam-1, and a manager over them."""

    def __init__(self, root: Path, min_new_samples: int = 5) -> None:
        self.store = MemoryStore()
        self.registry = ModelRegistry(root / "registry")
        self.manager = TrainingManager(self.store, self.registry, ManagerConfig(min_new_samples=min_new_samples))
        self.count = 0
        data = b"weights"
        self.registry.register(
            "cam-1",
            data,
            ModelManifest(1, 0, sha256_hex(data), len(data), "yolov8n.yaml", tuple(CLASSES), 64),
        )

    def register_edge(self, edge_id: str) -> None:
        self.store.upsert_edge(EdgeInfo(edge_id, CLASSES, registered=T0))
        self.store.set_meta(edge_id, first_seen=T0, last_model_time=T0)

    def label(
        self,
        edge_id: str,
        n: int,
        *,
        student_right: bool = False,
        now: float = T0 + 10,
        scene_start: float = 0.0,
        audit: bool = False,
    ):
        """Upload n samples, label each with one teacher box, report the batch to the manager."""
        batch = []
        for _ in range(n):
            self.count += 1
            sample = stored(edge_id, self.count)
            sample.scene_start = scene_start
            sample.audit = audit
            sample.student = [BOX] if student_right else []
            assert self.store.add_sample(sample, b"jpeg")
            self.store.set_labels(edge_id, sample.sample_id, [BOX])
            sample.labels = [BOX]
            batch.append(sample)
        return self.manager.on_labelled(batch, now=now)


@pytest.fixture
def cloud(tmp_path: Path) -> Cloud:
    cloud = Cloud(tmp_path)
    cloud.register_edge("cam-1")
    return cloud


def test_no_job_before_enough_labelled_samples(cloud: Cloud) -> None:
    assert cloud.label("cam-1", 2) == []
    assert cloud.label("cam-1", 2) == []
    assert cloud.store.list_jobs() == []


def test_job_is_queued_once_enough_labelled_samples_arrive(cloud: Cloud) -> None:
    cloud.label("cam-1", 3)
    jobs = cloud.label("cam-1", 2)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.edge_id == "cam-1" and job.status == "queued"
    assert job.base_version == 1  # the registry's current model for the edge
    assert job.priority > 0
    assert cloud.store.queued_job_for("cam-1") == job


def test_a_queued_job_records_the_gain_the_manager_predicts(cloud: Cloud) -> None:
    cloud.label("cam-1", 2, student_right=True)  # live mAP50 1.0, then ...
    (job,) = cloud.label("cam-1", 3)  # ... the student misses every box: the proxy falls
    live = cloud.store.get_meta("cam-1")["live_map50"]
    assert 0.0 < live < 1.0
    assert job.predicted_gain == pytest.approx(1.0 - live)
    assert cloud.store.get_job(job.job_id).predicted_gain == job.predicted_gain
    assert job.achieved_gain is None  # the worker fills it in


def finished(edge_id: str, n: int, before: float, after: float, scene_start: float = 0.0) -> TrainingJob:
    """A job the worker has judged: held-out mAP50 before and after, for the scene it trained for."""
    job = TrainingJob(f"{edge_id}-done{n}", edge_id, 0.5, T0 + n, 1, status="done", achieved_gain=after - before)
    job.metrics = {"map50_before": before, "map50_after": after, "scene_start": scene_start}
    return job


def test_scene_yield_starts_at_the_bound_and_follows_the_scenes_own_jobs() -> None:
    assert scene_yield([], "cam-1", 0.0) == (1.0, 0)
    failed = [finished("cam-1", i, before=0.2, after=0.05) for i in range(3)]  # rejected: won nothing
    value, judged = scene_yield(failed, "cam-1", 0.0)
    # the fleet's prior is (0 + 0 + 0 + 1) / 4; the scene's own three jobs add nothing to it
    assert judged == 3 and value == pytest.approx((0.25) / 4)
    halfway = finished("cam-1", 9, before=0.2, after=0.6)  # won half of its 0.8 of room
    assert scene_yield(failed + [halfway], "cam-1", 0.0)[0] > value


def test_scene_yield_of_a_new_scene_is_the_fleets_and_unjudged_jobs_do_not_count() -> None:
    jobs = [finished("cam-1", 1, before=0.5, after=0.5, scene_start=0.0), finished("cam-2", 2, before=0.4, after=0.7)]
    unjudged = TrainingJob("cam-1-x", "cam-1", 0.5, T0, 1, status="done")  # held-out frames had no boxes
    fleet = (0.0 + 0.5 + 1.0) / 3
    assert scene_yield(jobs + [unjudged], "cam-1", 120.0) == (pytest.approx(fleet), 0)  # cam-1's new scene
    assert scene_yield(jobs, "cam-1", 0.0) == (pytest.approx((0.0 + fleet) / 2), 1)


def test_a_scene_whose_jobs_win_nothing_ranks_below_one_with_the_same_need(tmp_path: Path) -> None:
    """Need is not gain: with the same live accuracy and the same wait, the edge whose earlier
    jobs of this scene failed is served after the one with no such record."""
    cloud = Cloud(tmp_path)
    for edge_id in ("cam-1", "cam-2"):
        cloud.register_edge(edge_id)
    for i in range(2):
        cloud.store.put_job(finished("cam-1", i, before=0.3, after=0.1, scene_start=50.0))
    n = ManagerConfig().min_scene_samples  # a new scene's first job is due after this many frames
    (failing,) = cloud.label("cam-1", n, scene_start=50.0)
    (fresh,) = cloud.label("cam-2", n, scene_start=50.0)
    room = 1.0 - cloud.store.get_meta("cam-1")["live_map50"]
    assert room == pytest.approx(1.0 - cloud.store.get_meta("cam-2")["live_map50"])
    assert fresh.predicted_gain == pytest.approx(room * (0 + 0 + 1) / 3)  # the fleet's yield
    assert failing.predicted_gain == pytest.approx(room * (1 / 3) / 3)  # shrunk by its own two failures
    assert failing.priority < fresh.priority
    assert "expected yield 0.11 (2 judged jobs of this scene)" in failing.reason
    assert cloud.store.claim_job("worker-1", timeout_s=0).edge_id == "cam-2"


@pytest.mark.parametrize("rank", ["gain", "gain_per_frame"])
def test_ranked_by_gain_per_frame_the_job_with_less_work_goes_first(tmp_path: Path, rank: str) -> None:
    """Two edges with the same need and wait: by gain they rank alike; by gain per frame the one
    whose scene has half the frames to train on is served first, at twice the priority."""
    cloud = Cloud(tmp_path)
    cloud.manager.cfg = ManagerConfig(min_new_samples=20, min_scene_samples=4, rank=rank)
    for edge_id in ("cam-1", "cam-2"):
        cloud.register_edge(edge_id)
    (small,) = cloud.label("cam-1", 4, scene_start=T0 + 50)  # a new scene's first job, 4 frames
    cloud.label("cam-2", 3, scene_start=T0 + 50)
    (large,) = cloud.label("cam-2", 5, scene_start=T0 + 50)  # the same need, 8 frames
    assert small.predicted_gain == pytest.approx(large.predicted_gain)
    if rank == "gain":
        assert small.priority == pytest.approx(large.priority)
    else:
        assert small.priority == pytest.approx(2 * large.priority)
        assert cloud.store.claim_job("worker-1", timeout_s=0).edge_id == "cam-1"


def test_more_samples_re_rank_the_queued_job_instead_of_queuing_another(cloud: Cloud) -> None:
    """By gain x staleness alone (per frame, the new samples' work would also count against it)."""
    cloud.manager.cfg = cloud.manager.cfg.model_copy(update={"rank": "gain"})
    (job,) = cloud.label("cam-1", 5, now=T0 + 10)
    assert cloud.label("cam-1", 5, now=T0 + 600) == []  # much staler now
    queued = cloud.store.list_jobs(status="queued")
    assert [j.job_id for j in queued] == [job.job_id]
    assert queued[0].priority > job.priority


def test_queued_job_falls_in_rank_when_the_edge_becomes_accurate(cloud: Cloud) -> None:
    (job,) = cloud.label("cam-1", 5)
    for _ in range(5):
        cloud.label("cam-1", 5, student_right=True)  # the student now agrees with the teacher
    queued = cloud.store.queued_job_for("cam-1")
    assert queued is not None and queued.job_id == job.job_id
    assert queued.priority < job.priority


def test_no_second_job_while_one_runs_and_a_new_one_after_it_finishes(cloud: Cloud) -> None:
    cloud.label("cam-1", 5)
    running = cloud.store.claim_job("worker-1", timeout_s=0)
    assert running is not None
    assert cloud.label("cam-1", 5) == []  # enough new samples, but a job is running
    running.status = "done"
    cloud.store.update_job(running)
    (second,) = cloud.label("cam-1", 1)
    assert second.job_id != running.job_id


def test_samples_covered_by_a_queued_job_do_not_count_again(cloud: Cloud) -> None:
    cloud.label("cam-1", 5)
    job = cloud.store.claim_job("worker-1", timeout_s=0)
    job.status = "done"
    cloud.store.update_job(job)
    assert cloud.label("cam-1", 4) == []  # 4 new since the job, 5 needed
    assert len(cloud.label("cam-1", 1)) == 1


def test_a_new_scene_queues_its_first_job_after_min_scene_samples(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path, min_new_samples=50)
    cloud.manager.cfg = ManagerConfig(min_new_samples=50, min_scene_samples=4, follow_up="count")
    cloud.register_edge("cam-1")
    assert cloud.label("cam-1", 10) == []  # no scene change reported: the volume rule applies
    assert cloud.label("cam-1", 3, scene_start=T0 + 100) == []  # 3 frames of the new scene
    (job,) = cloud.label("cam-1", 1, scene_start=T0 + 100)
    assert job.reason.startswith("new scene")
    job = cloud.store.claim_job("worker-1", timeout_s=0)
    job.status = "done"
    cloud.store.update_job(job)
    assert cloud.label("cam-1", 8, scene_start=T0 + 100) == []  # that scene has had its job
    assert len(cloud.label("cam-1", 4, scene_start=T0 + 200)) == 1  # the next scene gets one


def _finish_next_job(cloud: Cloud) -> None:
    job = cloud.store.claim_job("worker-1", timeout_s=0)
    job.status = "done"
    cloud.store.update_job(job)


@pytest.mark.parametrize("follow_up", ["count", "doubling"])
def test_a_scenes_next_job_is_due_after_min_new_samples_or_once_its_frames_doubled(
    tmp_path: Path, follow_up: str
) -> None:
    cloud = Cloud(tmp_path)
    cloud.manager.cfg = ManagerConfig(min_new_samples=20, min_scene_samples=4, follow_up=follow_up)
    cloud.register_edge("cam-1")
    scene = T0 + 100
    cloud.label("cam-1", 3)  # the old scene's frames never count for the new one
    assert len(cloud.label("cam-1", 4, scene_start=scene)) == 1  # the scene's first job: 4 frames
    _finish_next_job(cloud)
    # new frames each next job waits for: the scene's covered frames, 4, 8, 16, then the cap
    needed = [4, 8, 16, 20] if follow_up == "doubling" else [20, 20]
    for n in needed:
        assert cloud.label("cam-1", n - 1, scene_start=scene) == []
        assert len(cloud.label("cam-1", 1, scene_start=scene)) == 1
        _finish_next_job(cloud)


def test_worker_trains_and_validates_on_the_current_scene_and_replays_older_ones(cloud: Cloud, tmp_path: Path) -> None:
    from cloud_trainer.worker import TrainingWorker

    cloud.label("cam-1", 10, scene_start=0.0)
    cloud.label("cam-1", 10, scene_start=T0 + 50)
    cfg = TrainingConfig(max_fresh=15, heldout_fraction=0.2, min_heldout=2, replay_fraction=0.5)
    worker = TrainingWorker(cloud.store, cloud.registry, cfg, "w", workdir=tmp_path)
    job = cloud.store.list_jobs()[0]
    train, held, replay = worker.select(job)
    assert {s.scene_start for s in train + held} == {T0 + 50}  # only the current scene is fresh
    assert len(train) + len(held) == 10
    assert replay and {s.scene_start for s in replay} == {0.0}  # the old scene is replayed


def test_each_edge_is_judged_on_its_own_samples(cloud: Cloud) -> None:
    cloud.register_edge("cam-2")
    cloud.label("cam-2", 3)
    jobs = cloud.label("cam-1", 5)
    assert [j.edge_id for j in jobs] == ["cam-1"]
    assert cloud.store.queued_job_for("cam-2") is None


def test_live_accuracy_proxy_tracks_student_against_teacher(cloud: Cloud) -> None:
    cloud.label("cam-1", 2)
    assert cloud.store.get_meta("cam-1")["live_map50"] == 0.0
    cloud.label("cam-1", 2, student_right=True)
    assert 0.0 < cloud.store.get_meta("cam-1")["live_map50"] < 1.0


def test_once_an_edge_sends_audit_frames_only_they_move_its_live_accuracy(cloud: Cloud) -> None:
    cloud.label("cam-1", 3)  # chosen on merit, the student misses: the proxy starts at 0
    assert cloud.store.get_meta("cam-1")["live_map50"] == 0.0
    cloud.label("cam-1", 2, student_right=True, audit=True)  # at random, it gets them right
    live = cloud.store.get_meta("cam-1")["live_map50"]
    assert live > 0.0
    cloud.label("cam-1", 4)  # hard frames again: they no longer say how the edge is doing
    assert cloud.store.get_meta("cam-1")["live_map50"] == live


# ---------------------------------------------------------------- fresh / held-out split


def fresh(n: int) -> list[StoredSample]:
    return [stored("cam-1", i, seq=i + 1) for i in range(n)]


def test_split_sizes_follow_the_held_out_fraction() -> None:
    train, held = split_fresh(fresh(50), TrainingConfig(heldout_fraction=0.2, min_heldout=4))
    assert (len(train), len(held)) == (40, 10)


def test_split_holds_out_at_least_the_minimum() -> None:
    train, held = split_fresh(fresh(10), TrainingConfig(heldout_fraction=0.2, min_heldout=4))
    assert (len(train), len(held)) == (6, 4)


def test_held_out_samples_can_be_the_newest() -> None:
    train, held = split_fresh(fresh(40), TrainingConfig(heldout_fraction=0.2, min_heldout=4, heldout="newest"))
    assert [s.seq for s in held] == list(range(33, 41))
    assert max(s.seq for s in train) == 32


def test_held_out_samples_are_interleaved_through_the_fresh_ones_by_default() -> None:
    samples = fresh(40)
    train, held = split_fresh(samples, TrainingConfig(heldout_fraction=0.2, min_heldout=4))
    held_seqs = [s.seq for s in held]
    assert held_seqs[0] <= 10 and held_seqs[-1] > 30  # spans the whole period, not its newest end
    gaps = [b - a for a, b in zip(held_seqs, held_seqs[1:], strict=False)]
    assert max(gaps) <= 6  # spread evenly (every 5th sample)


def test_split_is_by_arrival_order_whatever_the_input_order() -> None:
    samples = fresh(20)
    cfg = TrainingConfig(heldout_fraction=0.25, min_heldout=1)
    train, held = split_fresh(list(reversed(samples)), cfg)
    assert [s.seq for s in train] == sorted(s.seq for s in train)
    assert (train, held) == split_fresh(samples, cfg)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_split_never_holds_out_every_sample(n: int) -> None:
    train, held = split_fresh(fresh(n), TrainingConfig(heldout_fraction=0.5, min_heldout=10))
    assert len(train) >= 1
    assert len(train) + len(held) == n


def test_split_of_nothing_is_empty() -> None:
    assert split_fresh([], TrainingConfig()) == ([], [])


@settings(max_examples=200, deadline=None, database=None)  # no .hypothesis/ in the repo
@given(
    n=st.integers(0, 300),
    fraction=st.floats(0.01, 0.99),
    min_heldout=st.integers(1, 50),
)
def test_split_partitions_the_fresh_samples(n: int, fraction: float, min_heldout: int) -> None:
    samples = fresh(n)
    train, held = split_fresh(samples, TrainingConfig(heldout_fraction=fraction, min_heldout=min_heldout))
    seqs = sorted(s.seq for s in train + held)
    assert seqs == [s.seq for s in samples]  # every sample once, none twice
    if n:
        assert train
        assert len(held) == min(n - 1, max(min_heldout, round(n * fraction)))


def test_fixed_split_never_judges_a_job_on_frames_an_earlier_job_trained_on() -> None:
    cfg = TrainingConfig(heldout_fraction=0.2, min_heldout=4, heldout="fixed")
    samples = fresh(100)
    # jobs as frames arrive (one new frame per job: the hardest case), then a 40-frame window sliding on
    windows = [samples[:n] for n in range(2, 60)] + [samples[k : k + 40] for k in range(20, 61)]
    trained: set[int] = set()
    for window in windows:
        train, held = split_fresh(window, cfg)
        assert not trained & {s.seq for s in held}, f"window {window[0].seq}-{window[-1].seq}"
        assert train and len(train) + len(held) == len(window)
        assert len(held) >= min(cfg.min_heldout, len(window) - 1)
        trained |= {s.seq for s in train}
    _, held = split_fresh(samples[:100], cfg)
    assert len(held) == 20  # every fifth frame once a scene has enough of them


@settings(max_examples=200, deadline=None, database=None)
@given(n=st.integers(0, 300), fraction=st.floats(0.01, 0.99), min_heldout=st.integers(1, 50))
def test_fixed_split_partitions_the_fresh_samples(n: int, fraction: float, min_heldout: int) -> None:
    samples = fresh(n)
    cfg = TrainingConfig(heldout_fraction=fraction, min_heldout=min_heldout, heldout="fixed")
    train, held = split_fresh(samples, cfg)
    assert sorted(s.seq for s in train + held) == [s.seq for s in samples]
    if n > 1:
        assert train and len(held) >= min(min_heldout, n - 1)


def test_audit_frames_are_the_held_out_set_when_there_are_enough() -> None:
    samples = fresh(40)
    for s in samples[::8]:  # 5 frames the edge drew at random
        s.audit = True
    train, held = split_fresh(samples, TrainingConfig(heldout_fraction=0.2, min_heldout=4))
    assert [s.seq for s in held] == [s.seq for s in samples[::8]]
    assert not any(s.audit for s in train) and len(train) == 35


def test_too_few_audit_frames_are_held_out_with_a_share_of_the_others() -> None:
    samples = fresh(40)
    for s in samples[:3]:
        s.audit = True
    train, held = split_fresh(samples, TrainingConfig(heldout_fraction=0.2, min_heldout=4))
    assert not any(s.audit for s in train)
    assert {1, 2, 3} <= {s.seq for s in held} and len(held) == 8  # the held-out share, 8 of 40
    extra = [s.seq for s in held if not s.audit]
    assert extra[0] <= 10 and extra[-1] > 30  # the others' part interleaved through the window
    assert sorted(s.seq for s in train + held) == list(range(1, 41))


@pytest.mark.parametrize("heldout", ["interleaved", "newest", "fixed"])
def test_no_job_of_a_scene_trains_on_its_audit_frames(heldout: str) -> None:
    cfg = TrainingConfig(heldout_fraction=0.2, min_heldout=4, heldout=heldout)
    samples = fresh(60)
    for s in samples[2::5]:  # a fifth drawn at random by the edge
        s.audit = True
    for n in range(2, 61):  # a job as every frame arrives: audit frames judge every model of the scene
        train, held = split_fresh(samples[:n], cfg)
        assert not any(s.audit for s in train), n
        assert train and len(train) + len(held) == n
        assert len(held) >= min(cfg.min_heldout, n - 1)


@pytest.mark.parametrize("audit_jury", [False, True])
def test_with_an_audit_jury_a_job_waits_for_min_heldout_audit_frames(cloud: Cloud, audit_jury: bool) -> None:
    cloud.label("cam-1", 10)
    cloud.label("cam-1", 2, audit=True)  # the edge sends audit frames: two so far
    cfg = TrainingConfig(min_fresh=8, min_heldout=4, audit_jury=audit_jury)
    worker = TrainingWorker(cloud.store, cloud.registry, cfg, "w-1")
    job = cloud.store.queued_job_for("cam-1")
    assert worker.ready(*worker.select(job)[:2]) is not audit_jury
    cloud.label("cam-1", 2, audit=True)
    assert worker.ready(*worker.select(job)[:2])


def test_an_audit_jury_does_not_hold_up_an_edge_that_sends_no_audit_frames(cloud: Cloud) -> None:
    cloud.label("cam-1", 12)
    worker = TrainingWorker(cloud.store, cloud.registry, TrainingConfig(min_fresh=8, audit_jury=True), "w-1")
    assert worker.ready(*worker.select(cloud.store.queued_job_for("cam-1"))[:2])


def test_a_queued_job_keeps_its_rank_as_the_next_samples_arrive(cloud: Cloud) -> None:
    """Its predicted gain x staleness, that is (ranked per frame, more frames are more work)."""
    cloud.manager.cfg = cloud.manager.cfg.model_copy(update={"rank": "gain"})
    (job,) = cloud.label("cam-1", 5)
    cloud.label("cam-1", 1)  # the job will train on these too: it has no less data than it had
    assert cloud.store.queued_job_for("cam-1").priority == pytest.approx(job.priority)


def test_a_queued_job_waits_for_frames_of_its_edges_new_scene_and_ready_jobs_go_first(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    for edge_id in ("cam-1", "cam-2"):
        cloud.register_edge(edge_id)
    (changing,) = cloud.label("cam-1", 5)  # cam-1 is missing every box: much to gain
    (steady,) = cloud.label("cam-2", 5, student_right=True)
    assert changing.priority > steady.priority
    cloud.manager.on_scene_change(SceneChange("cam-1", 200.0, 0.0, (), (), 1))
    # none of cam-1's frames shows its new scene: its job could not train, and cam-2's goes first
    assert cloud.store.queued_job_for("cam-1").priority == 0.0
    needed = ManagerConfig().min_scene_samples
    cloud.label("cam-1", needed - 1, scene_start=200.0)
    assert cloud.store.queued_job_for("cam-1").priority == 0.0
    cloud.label("cam-1", 1, scene_start=200.0)
    # with a new scene's first frames in, the room the new scene has ranks it first again
    assert cloud.store.queued_job_for("cam-1").priority > steady.priority
    assert cloud.store.claim_job("worker-1", timeout_s=0).edge_id == "cam-1"
