"""The cloud state store contract, run against the in-process store and a real Redis."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from cloud_trainer.state import MemoryStore, RedisStore, StateStore, StoreUnavailable, build_store
from edgesync.config import MemoryStoreConfig, RedisStoreConfig
from edgesync.errors import NotFound, UnknownEdge
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob

pytestmark = pytest.mark.integration

BOX = Detection(10.0, 20.0, 110.0, 220.0, 0, 0.91)


def make_sample(edge_id: str, sample_id: str, **overrides: object) -> StoredSample:
    fields: dict[str, object] = dict(
        sample_id=sample_id,
        edge_id=edge_id,
        capture_time=100.0,
        received_time=101.0,
        model_version=3,
        score=0.7,
        frame_index=42,
        student=[Detection(1.0, 2.0, 30.0, 40.0, 1, 0.3)],
        width=640,
        height=480,
    )
    fields.update(overrides)
    return StoredSample(**fields)  # type: ignore[arg-type]


def add(store: StateStore, edge_id: str, *sample_ids: str) -> None:
    for sample_id in sample_ids:
        assert store.add_sample(make_sample(edge_id, sample_id), f"jpeg:{sample_id}".encode())


def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, so nothing answers there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_job(job_id: str, priority: float = 1.0, created: float = 1000.0, edge_id: str = "cam-a") -> TrainingJob:
    return TrainingJob(job_id=job_id, edge_id=edge_id, priority=priority, created=created, base_version=1)


# ---------------------------------------------------------------------- samples


def test_duplicate_sample_is_stored_once_and_reported(store: StateStore) -> None:
    first = make_sample("cam-a", "s1")
    assert store.add_sample(first, b"jpeg-1") is True
    retry = make_sample("cam-a", "s1")
    assert store.add_sample(retry, b"jpeg-retry") is False

    assert store.count_samples("cam-a") == 1
    assert store.get_jpeg("cam-a", "s1") == b"jpeg-1"
    assert [s.sample_id for s in store.take_unlabelled(10, 0.0)] == ["s1"]  # queued once
    assert store.add_sample(make_sample("cam-b", "s1"), b"other edge") is True  # ids are per edge


def test_sample_round_trips_every_field(store: StateStore) -> None:
    sample = make_sample("cam-a", "s1")
    store.add_sample(sample, b"\xff\xd8\x00binary\xff\xd9")
    (got,) = store.list_samples("cam-a")
    assert got == sample  # seq included: add_sample set it on the caller's object too
    assert got.labels is None
    assert store.get_jpeg("cam-a", "s1") == b"\xff\xd8\x00binary\xff\xd9"


def test_seq_counts_arrivals_per_edge_from_one(store: StateStore) -> None:
    seqs: dict[str, list[int]] = {"cam-a": [], "cam-b": []}
    for i in range(4):
        for edge_id in ("cam-a", "cam-b"):
            sample = make_sample(edge_id, f"s{i}")
            store.add_sample(sample, b"x")
            seqs[edge_id].append(sample.seq)
    assert seqs == {"cam-a": [1, 2, 3, 4], "cam-b": [1, 2, 3, 4]}
    assert [s.seq for s in store.list_samples("cam-a")] == [1, 2, 3, 4]


def test_labelling_queue_is_fifo_across_edges(store: StateStore) -> None:
    add(store, "cam-a", "a1")
    add(store, "cam-b", "b1")
    add(store, "cam-a", "a2")
    add(store, "cam-b", "b2")
    first = store.take_unlabelled(3, 0.0)
    rest = store.take_unlabelled(3, 0.0)
    assert [(s.edge_id, s.sample_id) for s in first] == [("cam-a", "a1"), ("cam-b", "b1"), ("cam-a", "a2")]
    assert [(s.edge_id, s.sample_id) for s in rest] == [("cam-b", "b2")]


def test_take_unlabelled_waits_out_its_timeout_when_nothing_arrives(store: StateStore) -> None:
    start = time.monotonic()
    assert store.take_unlabelled(5, 0.3) == []
    assert 0.25 <= time.monotonic() - start < 2.0


def test_take_unlabelled_wakes_as_soon_as_a_sample_arrives(store: StateStore) -> None:
    timer = threading.Timer(0.2, add, args=(store, "cam-a", "late"))
    timer.start()
    start = time.monotonic()
    try:
        got = store.take_unlabelled(5, 10.0)
    finally:
        timer.join()
    assert [s.sample_id for s in got] == ["late"]
    assert time.monotonic() - start < 3.0


def test_set_labels_moves_sample_to_labelled(store: StateStore) -> None:
    add(store, "cam-a", "s1", "s2", "s3")
    store.set_labels("cam-a", "s2", [BOX])
    store.set_labels("cam-a", "s3", [])  # the teacher saw nothing: labelled, no boxes

    labelled = store.list_samples("cam-a", labelled=True)
    assert [(s.sample_id, s.labels) for s in labelled] == [("s2", [BOX]), ("s3", [])]
    assert [s.sample_id for s in store.list_samples("cam-a", labelled=False)] == ["s1"]
    assert store.count_samples("cam-a", labelled=True) == 2
    assert store.count_samples("cam-a", labelled=False) == 1
    assert store.count_samples("cam-a") == 3


def test_set_labels_on_missing_sample_raises_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.set_labels("cam-a", "nope", [BOX])
    with pytest.raises(NotFound, match="nope"):
        store.get_jpeg("cam-a", "nope")


def test_list_samples_filters_by_min_seq_and_limits_from_either_end(store: StateStore) -> None:
    add(store, "cam-a", *(f"s{i}" for i in range(1, 7)))
    for sample_id in ("s2", "s4", "s5", "s6"):
        store.set_labels("cam-a", sample_id, [BOX])

    assert [s.seq for s in store.list_samples("cam-a", min_seq=4)] == [4, 5, 6]
    assert [s.seq for s in store.list_samples("cam-a", limit=2)] == [1, 2]
    assert [s.seq for s in store.list_samples("cam-a", limit=2, newest_first=True)] == [6, 5]
    assert [s.seq for s in store.list_samples("cam-a", labelled=True, min_seq=3, newest_first=True)] == [
        6,
        5,
        4,
    ]
    assert store.list_samples("cam-a", limit=0) == []
    assert store.count_samples("cam-a", labelled=True, min_seq=5) == 2
    assert store.list_samples("cam-unknown") == []
    assert store.count_samples("cam-unknown") == 0


def test_oldest_samples_are_trimmed_beyond_the_per_edge_limit(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store(max_samples_per_edge=3)
    add(store, "cam-a", "s1", "s2", "s3")
    store.set_labels("cam-a", "s1", [BOX])
    add(store, "cam-a", "s4", "s5")
    add(store, "cam-b", "b1")

    assert [s.sample_id for s in store.list_samples("cam-a")] == ["s3", "s4", "s5"]
    assert store.count_samples("cam-a", labelled=True) == 0  # labelled s1 was trimmed too
    assert store.count_samples("cam-a", labelled=False) == 3
    with pytest.raises(NotFound):
        store.get_jpeg("cam-a", "s1")
    queued = store.take_unlabelled(10, 0.0)  # trimmed ones are skipped, not handed out
    assert [s.sample_id for s in queued] == ["s3", "s4", "s5", "b1"]


def test_returned_samples_are_copies(store: StateStore) -> None:
    add(store, "cam-a", "s1")
    (got,) = store.list_samples("cam-a")
    got.student.clear()
    got.labels = [BOX]
    (again,) = store.list_samples("cam-a")
    assert len(again.student) == 1 and again.labels is None


# ---------------------------------------------------------------------- jobs


def test_claim_job_takes_highest_priority_then_oldest(store: StateStore) -> None:
    store.put_job(make_job("low", priority=1.0, created=10.0))
    store.put_job(make_job("high-new", priority=5.0, created=30.0))
    store.put_job(make_job("high-old", priority=5.0, created=20.0))
    store.put_job(replace(make_job("done", priority=9.0, created=5.0), status="done"))

    order = [store.claim_job("w1", 0.0) for _ in range(4)]
    assert [j.job_id if j else None for j in order] == ["high-old", "high-new", "low", None]


def test_reprioritize_reorders_queued_jobs_but_never_requeues_a_claimed_one(store: StateStore) -> None:
    store.put_job(make_job("a", priority=1.0, created=10.0))
    store.put_job(make_job("b", priority=2.0, created=20.0))
    assert store.reprioritize_job("a", 3.0)
    claimed = store.claim_job("w1", 0.0)
    assert claimed is not None and claimed.job_id == "a"
    assert not store.reprioritize_job("a", 9.0), "a running job must stay running"
    assert store.get_job("a").status == "running"
    assert [j.job_id for j in filter(None, [store.claim_job("w1", 0.0), store.claim_job("w1", 0.0)])] == ["b"]
    assert not store.reprioritize_job("missing", 1.0)


def test_claimed_job_is_running_with_a_start_time(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    before = time.time()
    job = store.claim_job("w1", 1.0)
    assert job is not None and job.status == "running" and job.started >= before
    stored = store.get_job("j1")
    assert stored.status == "running" and stored.started == job.started
    assert store.queued_job_for("cam-a") is None


def test_claim_job_returns_none_after_its_timeout(store: StateStore) -> None:
    start = time.monotonic()
    assert store.claim_job("w1", 0.3) is None
    assert 0.25 <= time.monotonic() - start < 2.0


def test_claim_job_wakes_when_a_job_is_queued(store: StateStore) -> None:
    timer = threading.Timer(0.2, store.put_job, args=(make_job("late"),))
    timer.start()
    try:
        job = store.claim_job("w1", 10.0)
    finally:
        timer.join()
    assert job is not None and job.job_id == "late"


def test_concurrent_claimers_never_get_the_same_job(store: StateStore) -> None:
    n_jobs = 40
    for i in range(n_jobs):
        store.put_job(make_job(f"j{i}", priority=float(i % 3), created=float(i)))
    claimed: list[list[str]] = [[] for _ in range(4)]

    def worker(mine: list[str]) -> None:
        while (job := store.claim_job(f"w{id(mine)}", 0.0)) is not None:
            mine.append(job.job_id)

    threads = [threading.Thread(target=worker, args=(c,)) for c in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    everything = [job_id for mine in claimed for job_id in mine]
    assert sorted(everything) == sorted(f"j{i}" for i in range(n_jobs))  # each exactly once
    assert all(j.status == "running" for j in store.list_jobs(limit=n_jobs))


def test_put_job_replaces_by_id_and_requeues(store: StateStore) -> None:
    store.put_job(make_job("a", priority=1.0))
    store.put_job(make_job("b", priority=2.0))
    store.put_job(make_job("a", priority=3.0))  # the manager raised a's priority
    assert store.claim_job("w1", 0.0).job_id == "a"  # type: ignore[union-attr]
    assert store.claim_job("w1", 0.0).job_id == "b"  # type: ignore[union-attr]
    assert store.claim_job("w1", 0.0) is None  # a's old priority left no second entry
    assert len(store.list_jobs()) == 2


def test_update_job_persists_results_and_rejects_unknown_ids(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    job = store.claim_job("w1", 0.0)
    assert job is not None
    job.status, job.result_version, job.metrics = "done", 2, {"map50": 0.8}
    store.update_job(job)
    assert store.get_job("j1") == job
    with pytest.raises(NotFound, match="ghost"):
        store.update_job(make_job("ghost"))
    with pytest.raises(NotFound, match="ghost"):
        store.get_job("ghost")


def test_list_jobs_is_newest_first_with_filters(store: StateStore) -> None:
    store.put_job(make_job("a1", created=1.0, edge_id="cam-a"))
    store.put_job(make_job("b1", created=2.0, edge_id="cam-b"))
    store.put_job(make_job("a2", created=3.0, edge_id="cam-a"))
    store.update_job(replace(make_job("a1", created=1.0, edge_id="cam-a"), status="failed"))

    assert [j.job_id for j in store.list_jobs()] == ["a2", "b1", "a1"]
    assert [j.job_id for j in store.list_jobs(limit=2)] == ["a2", "b1"]
    assert [j.job_id for j in store.list_jobs(edge_id="cam-a")] == ["a2", "a1"]
    assert [j.job_id for j in store.list_jobs(status="queued")] == ["a2", "b1"]
    assert [j.job_id for j in store.list_jobs(status="failed", edge_id="cam-a")] == ["a1"]


def test_queued_job_for_finds_only_that_edges_queued_job(store: StateStore) -> None:
    store.put_job(make_job("a1", edge_id="cam-a"))
    store.put_job(make_job("b1", edge_id="cam-b"))
    found = store.queued_job_for("cam-b")
    assert found is not None and found.job_id == "b1"
    assert store.queued_job_for("cam-c") is None


# ---------------------------------------------------------------------- edges and metadata


def make_edge(edge_id: str = "cam-a") -> EdgeInfo:
    return EdgeInfo(edge_id=edge_id, class_names=["person", "car"], description="plaza", registered=5.5)


def test_edge_round_trip_update_and_increment(store: StateStore) -> None:
    store.upsert_edge(make_edge("cam-b"))
    store.upsert_edge(make_edge("cam-a"))
    assert store.get_edge("cam-a") == make_edge("cam-a")
    store.update_edge("cam-a", model_version=4, confidence_proxy=0.42, description="moved")
    assert store.incr_edge("cam-a", "uplink_bytes", 1000) == 1000
    assert store.incr_edge("cam-a", "uplink_bytes") == 1001

    got = store.get_edge("cam-a")
    assert (got.model_version, got.confidence_proxy, got.description) == (4, 0.42, "moved")
    assert got.uplink_bytes == 1001 and got.class_names == ["person", "car"]
    assert [e.edge_id for e in store.list_edges()] == ["cam-a", "cam-b"]


def test_unknown_edge_error_names_the_id(store: StateStore) -> None:
    with pytest.raises(UnknownEdge, match="cam-nowhere"):
        store.get_edge("cam-nowhere")
    with pytest.raises(UnknownEdge, match="cam-nowhere"):
        store.update_edge("cam-nowhere", frames=1)
    with pytest.raises(UnknownEdge, match="cam-nowhere"):
        store.incr_edge("cam-nowhere", "frames")


def test_update_edge_rejects_attributes_edgeinfo_lacks(store: StateStore) -> None:
    store.upsert_edge(make_edge())
    with pytest.raises(ValueError, match="fps"):
        store.update_edge("cam-a", fps=10)
    with pytest.raises(ValueError, match="description"):
        store.incr_edge("cam-a", "description")


def test_meta_round_trip_merges_values(store: StateStore) -> None:
    assert store.get_meta("cam-a") == {}
    store.set_meta("cam-a", last_job_seq=12, drift=0.25)
    store.set_meta("cam-a", drift=0.5)
    assert store.get_meta("cam-a") == {"last_job_seq": 12.0, "drift": 0.5}
    assert store.get_meta("cam-b") == {}


def test_store_answers_ping(store: StateStore) -> None:
    assert store.ping() is True


# ---------------------------------------------------------------------- back-end specific


def test_two_redis_stores_share_state_like_two_processes(redis_url: str, redis_prefix: str) -> None:
    with RedisStore(redis_url, redis_prefix) as one, RedisStore(redis_url, redis_prefix) as two:
        assert one.add_sample(make_sample("cam-a", "s1"), b"x") is True
        assert two.add_sample(make_sample("cam-a", "s1"), b"x") is False
        for i in range(20):
            one.put_job(make_job(f"j{i}", created=float(i)))
        claimed: list[str] = []
        lock = threading.Lock()

        def worker(s: StateStore) -> None:
            while (job := s.claim_job("w", 0.0)) is not None:
                with lock:
                    claimed.append(job.job_id)

        threads = [threading.Thread(target=worker, args=(s,)) for s in (one, two, one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert sorted(claimed) == sorted(f"j{i}" for i in range(20))


def test_unreachable_redis_error_names_the_url() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with pytest.raises(StoreUnavailable, match=re.escape(url)):
        build_store(RedisStoreConfig(url=url))


def test_redis_going_away_mid_run_raises_store_unavailable(
    disposable_redis: tuple[str, Callable[[], None]],
) -> None:
    url, stop = disposable_redis
    store = RedisStore(url, "edgesync-test")
    store.upsert_edge(make_edge())
    stop()
    assert store.ping() is False
    with pytest.raises(StoreUnavailable, match=re.escape(url)):
        store.get_edge("cam-a")
    store.close()


def test_redis_password_is_not_shown_in_errors() -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    with pytest.raises(StoreUnavailable) as caught:
        RedisStore(url)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_default_config_builds_an_in_process_store() -> None:
    assert isinstance(build_store(MemoryStoreConfig()), MemoryStore)
