"""The cloud state store contract, run against the in-process store and a real Redis.

Both back-ends must agree on jobs too: claim order, one live claim per edge, leases renewed by
heartbeat, takeover of a claim whose lease lapsed, and fencing of the claim that lost it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import redis

from cloud_trainer.state import MemoryStore, RedisStore, StateStore, StoreUnavailable, build_store
from edgesync.config import MemoryStoreConfig, RedisStoreConfig
from edgesync.errors import InvalidInput, NotFound, UnknownEdge
from edgesync.types import Detection, EdgeEvent, EdgeInfo, StoredSample, TrainingJob

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
        scene_start=90.0,
        audit=True,
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


def make_job(job_id: str, priority: float = 1.0, created: float = 1000.0, edge_id: str | None = None) -> TrainingJob:
    """A queued job; each job id gets its own edge unless edge_id says otherwise (one edge, one claim at a time)."""
    edge = edge_id or f"cam-{job_id}"
    return TrainingJob(job_id=job_id, edge_id=edge, priority=priority, created=created, base_version=1)


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


def test_a_stored_sample_is_counted_on_its_edge_in_the_same_step(store: StateStore) -> None:
    store.upsert_edge(make_edge("cam-a"))
    assert store.add_sample(make_sample("cam-a", "s1"), b"\xff\xd8jpeg") is True
    assert store.add_sample(make_sample("cam-a", "s1"), b"\xff\xd8jpeg resent") is False  # not counted twice
    assert store.add_sample(make_sample("cam-a", "s2"), b"\x00" * 100) is True
    edge = store.get_edge("cam-a")
    assert (edge.samples_received, edge.uplink_bytes) == (2, 6 + 100)  # bytes, not characters
    assert store.add_sample(make_sample("cam-z", "s1"), b"jpeg") is True  # an unregistered edge: stored only


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


def test_claimed_job_is_running_with_a_start_time_and_a_lease(store: StateStore) -> None:
    store.put_job(make_job("j1", edge_id="cam-a"))
    before = time.time()
    job = store.claim_job("w1", 1.0)
    assert job is not None and job.status == "running" and job.started >= before
    assert (job.worker_id, job.attempts) == ("w1", 1) and job.lease.startswith("w1/")
    stored = store.get_job("j1")
    assert stored == job
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


# ---------------------------------------------------------------------- leases, takeover, fencing

SHORT_LEASE_S = 0.4


def test_one_edge_is_never_claimed_twice_at_once(store: StateStore) -> None:
    store.put_job(make_job("a1", priority=3.0, edge_id="cam-a"))
    store.put_job(make_job("a2", priority=2.0, edge_id="cam-a"))
    store.put_job(make_job("b1", priority=1.0, edge_id="cam-b"))
    first = store.claim_job("w1", 0.0)
    assert first is not None and first.job_id == "a1"
    second = store.claim_job("w2", 0.0)
    assert second is not None and second.job_id == "b1", "a2 must wait: cam-a is being trained"
    assert store.claim_job("w3", 0.0) is None
    first.status = "done"
    assert store.complete_job(first)
    third = store.claim_job("w3", 0.0)
    assert third is not None and third.job_id == "a2"


def test_a_claim_blocked_by_a_busy_edge_wakes_when_the_edge_is_released(store: StateStore) -> None:
    store.put_job(make_job("a1", edge_id="cam-a"))
    store.put_job(make_job("a2", edge_id="cam-a", created=2000.0))
    running = store.claim_job("w1", 0.0)
    assert running is not None
    running.status = "done"
    timer = threading.Timer(0.2, store.complete_job, args=(running,))
    timer.start()
    start = time.monotonic()
    try:
        job = store.claim_job("w2", 10.0)
    finally:
        timer.join()
    assert job is not None and job.job_id == "a2"
    assert time.monotonic() - start < 5.0


def test_an_expired_lease_is_taken_over_and_the_old_claim_is_fenced_off(store: StateStore) -> None:
    store.put_job(make_job("j1", edge_id="cam-a"))
    old = store.claim_job("w1", 0.0, lease_s=SHORT_LEASE_S)
    assert old is not None
    assert store.claim_job("w2", 0.0, lease_s=SHORT_LEASE_S) is None  # the lease is live
    time.sleep(SHORT_LEASE_S + 0.1)  # w1 "dies": no heartbeat
    new = store.claim_job("w2", 5.0, lease_s=SHORT_LEASE_S)
    assert new is not None and new.job_id == "j1"
    assert (new.worker_id, new.attempts, new.status) == ("w2", 2, "running")
    assert new.lease != old.lease and new.started == old.started  # the same run, resumed

    assert not store.renew_lease(old), "w1 came back: its heartbeat must fail"
    old.status, old.result_version = "done", 7
    assert not store.complete_job(old), "and its result must not be written"
    assert store.get_job("j1").worker_id == "w2"

    assert store.renew_lease(new, 5.0)
    new.status, new.result_version = "done", 2
    assert store.complete_job(new)
    assert (store.get_job("j1").status, store.get_job("j1").result_version) == ("done", 2)
    assert store.claim_job("w3", 0.0, lease_s=SHORT_LEASE_S) is None  # nothing left to take over
    assert not store.complete_job(new), "a claim completes once"


def test_a_renewed_lease_is_never_taken_over(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    job = store.claim_job("w1", 0.0, lease_s=SHORT_LEASE_S)
    assert job is not None
    stop = threading.Event()
    renewed: list[bool] = []

    def heartbeat() -> None:
        while not stop.wait(SHORT_LEASE_S / 4):
            renewed.append(store.renew_lease(job, SHORT_LEASE_S))

    beat = threading.Thread(target=heartbeat)
    beat.start()
    try:
        assert store.claim_job("w2", 3 * SHORT_LEASE_S, lease_s=SHORT_LEASE_S) is None
    finally:
        stop.set()
        beat.join()
    assert renewed and all(renewed)
    assert store.get_job("j1").worker_id == "w1"


def test_a_lapsed_lease_nobody_took_is_renewed_and_completes(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    job = store.claim_job("w1", 0.0, lease_s=0.1)
    assert job is not None
    time.sleep(0.2)
    assert store.renew_lease(job, SHORT_LEASE_S)
    job.status = "failed"
    assert store.complete_job(job)
    assert store.get_job("j1").status == "failed"


def test_completing_a_claim_as_queued_puts_the_job_back(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    job = store.claim_job("w1", 0.0)
    assert job is not None
    job.status, job.error = "queued", "waiting for frames"
    assert store.complete_job(job)
    assert store.queued_job_for("cam-j1") is not None
    again = store.claim_job("w2", 0.0)
    assert again is not None and (again.job_id, again.attempts, again.worker_id) == ("j1", 2, "w2")


def test_update_job_out_of_running_releases_the_edge(store: StateStore) -> None:
    store.put_job(make_job("a1", edge_id="cam-a"))
    store.put_job(make_job("a2", edge_id="cam-a", created=2000.0))
    job = store.claim_job("w1", 0.0)
    assert job is not None
    job.status = "done"
    store.update_job(job)  # the unfenced path (benchmark, tools)
    assert not store.renew_lease(job)
    nxt = store.claim_job("w1", 0.0)
    assert nxt is not None and nxt.job_id == "a2"


def test_a_job_never_claimed_has_no_lease_to_renew_or_complete(store: StateStore) -> None:
    store.put_job(make_job("j1"))
    assert not store.renew_lease(make_job("j1"))
    assert not store.complete_job(replace(make_job("j1"), status="done"))
    assert store.get_job("j1").status == "queued"


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


def test_redis_token_read_by_a_worker_that_died_before_claiming_is_spent_again(
    redis_url: str, redis_prefix: str
) -> None:
    with RedisStore(redis_url, redis_prefix) as store:
        store.put_job(make_job("j1"))
        client = redis.Redis.from_url(redis_url)
        stream = f"{redis_prefix}:jobs:stream"
        assert client.xreadgroup("workers", "ghost", {stream: ">"}, count=1)  # read, then "died"
        client.close()
        assert store.claim_job("w2", 0.0, lease_s=SHORT_LEASE_S) is None  # its token is pending
        job = store.claim_job("w2", 5.0, lease_s=SHORT_LEASE_S)
        assert job is not None and job.job_id == "j1" and job.attempts == 1


def test_redis_stream_keeps_no_spent_tokens(redis_url: str, redis_prefix: str) -> None:
    with RedisStore(redis_url, redis_prefix) as store:
        for i in range(5):
            store.put_job(make_job(f"j{i}", edge_id="cam-a", created=float(i)))
        store.put_job(make_job("j0", edge_id="cam-a", priority=4.0, created=0.0))  # re-put: a spare token
        done = []
        while (job := store.claim_job("w1", 0.0)) is not None:
            job.status = "done"
            assert store.complete_job(job)
            done.append(job.job_id)
        assert done == ["j0", "j1", "j2", "j3", "j4"]
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.xlen(f"{redis_prefix}:jobs:stream") == 0
            assert client.xpending(f"{redis_prefix}:jobs:stream", "workers")["pending"] == 0
            assert not client.exists(f"{redis_prefix}:jobs:owners", f"{redis_prefix}:jobs:entries")
            assert not client.exists(f"{redis_prefix}:lease:cam-a")
        finally:
            client.close()


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


# ---------------------------------------------------------------- events


def test_events_are_kept_per_edge_and_kind_oldest_first(store: StateStore) -> None:
    for i in range(5):
        store.add_event(EdgeEvent("cam-a", "heartbeat", 100.0 + i, {"frames": float(i)}))
    store.add_event(EdgeEvent("cam-a", "scene_change", 102.5, {"confidence": 0.9}))
    store.add_event(EdgeEvent("cam-b", "heartbeat", 101.0, {"frames": 7.0}))
    beats = store.list_events("cam-a", "heartbeat")
    assert [e.data["frames"] for e in beats] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [e.time for e in store.list_events("cam-a", "heartbeat", since=102.0)] == [102.0, 103.0, 104.0]
    assert [e.time for e in store.list_events("cam-a", "heartbeat", limit=2)] == [103.0, 104.0]
    change = EdgeEvent("cam-a", "scene_change", 102.5, {"confidence": 0.9})
    assert store.list_events("cam-a", "scene_change") == [change]
    assert store.list_events("cam-b", "scene_change") == []
    with pytest.raises(InvalidInput, match="weather"):
        store.add_event(EdgeEvent("cam-a", "weather", 1.0))


def test_get_sample_returns_one_stored_sample_or_names_the_missing_one(store: StateStore) -> None:
    store.upsert_edge(EdgeInfo("cam-a", ["person"]))
    sample = StoredSample("s1", "cam-a", 1.0, 2.0, 1, 0.5, 7, [Detection(1, 2, 3, 4, 0, 0.9)], 64, 48)
    store.add_sample(sample, b"jpeg")
    store.set_labels("cam-a", "s1", [Detection(1, 2, 3, 5, 0, 1.0)])
    got = store.get_sample("cam-a", "s1")
    assert (got.frame_index, got.seq, got.student, got.labels) == (
        7,
        1,
        sample.student,
        [Detection(1, 2, 3, 5, 0, 1.0)],
    )
    with pytest.raises(NotFound, match="s2"):
        store.get_sample("cam-a", "s2")
