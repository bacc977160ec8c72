"""In-process state store: the embedded default, nothing to start, gone when the process stops.

One lock guards everything; two conditions on it wake threads blocked in take_unlabelled and
claim_job. Stored objects are copies, so callers cannot change state behind the store's back.

Leases keep the Redis store's semantics on one machine: each running job's claim is a token,
each edge's lease a token with a deadline on the monotonic clock; a claim whose deadline passes
unrenewed is taken over by the next claim_job, exactly as a Redis worker's would be.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from cloud_trainer.state.base import (
    DEFAULT_LEASE_S,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_SAMPLES_PER_EDGE,
    StateStore,
    check_event,
    check_int_edge_field,
    check_sample_id,
    claimed,
    coerce_edge_fields,
    copy_edge,
    copy_job,
    copy_sample,
    job_rank,
    new_lease_token,
)
from edgesync.errors import NotFound, UnknownEdge
from edgesync.types import Detection, EdgeEvent, EdgeInfo, StoredSample, TrainingJob, check_edge_id

logger = logging.getLogger(__name__)


@dataclass
class _Record:
    sample: StoredSample
    jpeg: bytes


@dataclass
class _EdgeLease:
    token: str  # the claim holding the edge
    expires: float  # time.monotonic() after which another worker may take the edge


class MemoryStore(StateStore):
    """StateStore kept in this process's memory (thread-safe, not shared between processes)."""

    def __init__(self, max_samples_per_edge: int = DEFAULT_MAX_SAMPLES_PER_EDGE) -> None:
        super().__init__(max_samples_per_edge)
        self._lock = threading.Lock()
        self._label_ready = threading.Condition(self._lock)
        self._job_ready = threading.Condition(self._lock)
        self._edges: dict[str, EdgeInfo] = {}
        # per edge: sample_id -> record, in seq order (trimming pops from the front)
        self._samples: dict[str, OrderedDict[str, _Record]] = {}
        self._seq: dict[str, int] = {}
        self._labelq: deque[tuple[str, str]] = deque()
        self._jobs: dict[str, TrainingJob] = {}
        self._queued: set[str] = set()
        self._owners: dict[str, str] = {}  # running job id -> token of the claim holding it
        self._edge_leases: dict[str, _EdgeLease] = {}
        self._meta: dict[str, dict[str, float]] = {}
        self._events: dict[tuple[str, str], deque[EdgeEvent]] = {}

    # ------------------------------------------------------------------ edges

    def upsert_edge(self, info: EdgeInfo) -> None:
        check_edge_id(info.edge_id)
        with self._lock:
            self._edges[info.edge_id] = copy_edge(info)

    def get_edge(self, edge_id: str) -> EdgeInfo:
        with self._lock:
            return copy_edge(self._edge(edge_id))

    def list_edges(self) -> list[EdgeInfo]:
        with self._lock:
            return [copy_edge(self._edges[k]) for k in sorted(self._edges)]

    def update_edge(self, edge_id: str, **fields: Any) -> None:
        values = coerce_edge_fields(edge_id, fields)
        with self._lock:
            info = self._edge(edge_id)
            for name, value in values.items():
                setattr(info, name, value)

    def incr_edge(self, edge_id: str, field: str, amount: int = 1) -> int:
        check_int_edge_field(edge_id, field)
        with self._lock:
            info = self._edge(edge_id)
            value = getattr(info, field) + int(amount)
            setattr(info, field, value)
            return value

    def _edge(self, edge_id: str) -> EdgeInfo:
        try:
            return self._edges[edge_id]
        except KeyError:
            raise UnknownEdge(f"unknown edge {edge_id!r}: it has not registered with this cloud") from None

    # ------------------------------------------------------------------ samples

    def add_sample(self, sample: StoredSample, jpeg: bytes) -> bool:
        check_edge_id(sample.edge_id)
        check_sample_id(sample.sample_id)
        with self._lock:
            records = self._samples.setdefault(sample.edge_id, OrderedDict())
            if sample.sample_id in records:
                return False
            seq = self._seq.get(sample.edge_id, 0) + 1
            self._seq[sample.edge_id] = seq
            sample.seq = seq
            records[sample.sample_id] = _Record(copy_sample(sample), bytes(jpeg))
            if (info := self._edges.get(sample.edge_id)) is not None:
                info.samples_received += 1
                info.uplink_bytes += len(jpeg)
            while len(records) > self.max_samples_per_edge:
                records.popitem(last=False)
            self._labelq.append((sample.edge_id, sample.sample_id))
            self._label_ready.notify()
            return True

    def take_unlabelled(self, max_items: int, timeout_s: float) -> list[StoredSample]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        out: list[StoredSample] = []
        with self._lock:
            while True:
                while self._labelq and len(out) < max_items:
                    edge_id, sample_id = self._labelq.popleft()
                    record = self._samples.get(edge_id, {}).get(sample_id)
                    if record is not None:  # None: trimmed while it waited
                        out.append(copy_sample(record.sample))
                remaining = deadline - time.monotonic()
                if out or max_items <= 0 or remaining <= 0:
                    return out
                self._label_ready.wait(remaining)

    def get_sample(self, edge_id: str, sample_id: str) -> StoredSample:
        with self._lock:
            return copy_sample(self._record(edge_id, sample_id).sample)

    def get_jpeg(self, edge_id: str, sample_id: str) -> bytes:
        with self._lock:
            return self._record(edge_id, sample_id).jpeg

    def set_labels(self, edge_id: str, sample_id: str, labels: list[Detection]) -> None:
        with self._lock:
            self._record(edge_id, sample_id).sample.labels = list(labels)

    def _record(self, edge_id: str, sample_id: str) -> _Record:
        record = self._samples.get(edge_id, {}).get(sample_id)
        if record is None:
            raise NotFound(f"no stored sample {sample_id!r} from edge {edge_id!r}")
        return record

    def _select(self, edge_id: str, labelled: bool | None, min_seq: int) -> list[StoredSample]:
        return [
            r.sample
            for r in self._samples.get(edge_id, {}).values()
            if r.sample.seq >= min_seq and (labelled is None or (r.sample.labels is not None) == labelled)
        ]

    def list_samples(
        self,
        edge_id: str,
        *,
        labelled: bool | None = None,
        min_seq: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredSample]:
        with self._lock:
            chosen = self._select(edge_id, labelled, min_seq)
            if newest_first:
                chosen.reverse()
            if limit is not None:
                chosen = chosen[: max(limit, 0)]
            return [copy_sample(s) for s in chosen]

    def count_samples(self, edge_id: str, *, labelled: bool | None = None, min_seq: int = 0) -> int:
        with self._lock:
            return len(self._select(edge_id, labelled, min_seq))

    # ------------------------------------------------------------------ jobs

    def put_job(self, job: TrainingJob) -> None:
        with self._lock:
            self._write_job(job)

    def reprioritize_job(self, job_id: str, priority: float) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != "queued":
                return False
            job.priority = priority
            return True

    def update_job(self, job: TrainingJob) -> None:
        with self._lock:
            if job.job_id not in self._jobs:
                raise NotFound(f"no training job {job.job_id!r} to update")
            self._write_job(job)

    def _write_job(self, job: TrainingJob) -> None:
        self._jobs[job.job_id] = copy_job(job)
        if job.status != "running":
            self._release(job.job_id)
        if job.status == "queued":
            self._queued.add(job.job_id)
            self._job_ready.notify_all()
        else:
            self._queued.discard(job.job_id)

    def _release(self, job_id: str) -> None:
        """Drop job_id's claim and free its edge if the edge's lease is that claim's."""
        token = self._owners.pop(job_id, None)
        if token is None:
            return
        for edge_id, lease in list(self._edge_leases.items()):
            if lease.token == token:
                del self._edge_leases[edge_id]
        self._job_ready.notify_all()  # a queued job of that edge may be claimable now

    def _edge_busy(self, edge_id: str, now: float) -> bool:
        lease = self._edge_leases.get(edge_id)
        return lease is not None and lease.expires > now

    def _lease(self, job: TrainingJob, worker_id: str, lease_s: float, now: float, *, takeover: bool) -> TrainingJob:
        token = new_lease_token(worker_id)
        self._owners[job.job_id] = token
        self._edge_leases[job.edge_id] = _EdgeLease(token, now + lease_s)
        self._queued.discard(job.job_id)
        claimed(job, worker_id, token, time.time(), takeover=takeover)
        verb = "took over" if takeover else "claimed"
        logger.info("worker %s %s job %s (edge %s, attempt %d)", worker_id, verb, job.job_id, job.edge_id, job.attempts)
        return copy_job(job)

    def _claim_now(self, worker_id: str, lease_s: float, now: float) -> TrainingJob | None:
        orphans = [
            self._jobs[j]
            for j in self._owners
            if self._jobs[j].status == "running" and not self._edge_busy(self._jobs[j].edge_id, now)
        ]
        if orphans:  # their workers stopped renewing: resume them before starting new work
            return self._lease(min(orphans, key=job_rank), worker_id, lease_s, now, takeover=True)
        free = [self._jobs[j] for j in self._queued if not self._edge_busy(self._jobs[j].edge_id, now)]
        if free:
            return self._lease(min(free, key=job_rank), worker_id, lease_s, now, takeover=False)
        return None

    def claim_job(self, worker_id: str, timeout_s: float, lease_s: float = DEFAULT_LEASE_S) -> TrainingJob | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            while True:
                now = time.monotonic()
                job = self._claim_now(worker_id, lease_s, now)
                if job is not None or now >= deadline:
                    return job
                wait = deadline - now
                expiries = [lease.expires - now for lease in self._edge_leases.values() if lease.expires > now]
                if expiries:  # a lease lapsing may make a job claimable without any notify
                    wait = min(wait, min(expiries) + 0.001)
                self._job_ready.wait(wait)

    def renew_lease(self, job: TrainingJob, lease_s: float = DEFAULT_LEASE_S) -> bool:
        with self._lock:
            stored = self._jobs.get(job.job_id)
            if stored is None or not job.lease or self._owners.get(job.job_id) != job.lease:
                return False
            now = time.monotonic()
            current = self._edge_leases.get(stored.edge_id)
            if current is not None and current.token != job.lease and current.expires > now:
                return False  # the lease lapsed and another job of the edge holds it now
            self._edge_leases[stored.edge_id] = _EdgeLease(job.lease, now + lease_s)
            return True

    def complete_job(self, job: TrainingJob) -> bool:
        with self._lock:
            if not job.lease or job.job_id not in self._jobs or self._owners.get(job.job_id) != job.lease:
                return False
            self._release(job.job_id)
            self._write_job(job)
            return True

    def get_job(self, job_id: str) -> TrainingJob:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"no training job {job_id!r}")
            return copy_job(job)

    def list_jobs(
        self, *, status: str | None = None, edge_id: str | None = None, limit: int = 100
    ) -> list[TrainingJob]:
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (status is None or j.status == status) and (edge_id is None or j.edge_id == edge_id)
            ]
            jobs.sort(key=lambda j: (j.created, j.job_id), reverse=True)
            return [copy_job(j) for j in jobs[: max(limit, 0)]]

    def queued_job_for(self, edge_id: str) -> TrainingJob | None:
        with self._lock:
            mine = [self._jobs[j] for j in self._queued if self._jobs[j].edge_id == edge_id]
            return copy_job(min(mine, key=job_rank)) if mine else None

    # ------------------------------------------------------------------ manager metadata

    def get_meta(self, edge_id: str) -> dict[str, float]:
        with self._lock:
            return dict(self._meta.get(edge_id, {}))

    def set_meta(self, edge_id: str, **values: float) -> None:
        converted = {k: float(v) for k, v in values.items()}
        with self._lock:
            self._meta.setdefault(edge_id, {}).update(converted)

    # ------------------------------------------------------------------ events

    def add_event(self, event: EdgeEvent) -> None:
        check_event(event)
        with self._lock:
            key = (event.edge_id, event.kind)
            self._events.setdefault(key, deque(maxlen=DEFAULT_MAX_EVENTS)).append(event)

    def list_events(self, edge_id: str, kind: str, *, since: float = 0.0, limit: int = 500) -> list[EdgeEvent]:
        with self._lock:
            found = [e for e in self._events.get((edge_id, kind), ()) if e.time >= since]
        return found[-limit:] if limit > 0 else []

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release; state stays readable until the object is dropped."""
