"""In-process state store: the embedded default, nothing to start, gone when the process stops.

One lock guards everything; two conditions on it wake threads blocked in take_unlabelled and
claim_job. Stored objects are copies, so callers cannot change state behind the store's back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from cloud_trainer.state.base import (
    DEFAULT_MAX_SAMPLES_PER_EDGE,
    StateStore,
    check_int_edge_field,
    check_sample_id,
    coerce_edge_fields,
    copy_edge,
    copy_job,
    copy_sample,
    job_rank,
)
from edgesync.errors import NotFound, UnknownEdge
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob, check_edge_id

logger = logging.getLogger(__name__)


@dataclass
class _Record:
    sample: StoredSample
    jpeg: bytes


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
        self._meta: dict[str, dict[str, float]] = {}

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
        if job.status == "queued":
            self._queued.add(job.job_id)
            self._job_ready.notify()
        else:
            self._queued.discard(job.job_id)

    def claim_job(self, worker_id: str, timeout_s: float) -> TrainingJob | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            while not self._queued:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._job_ready.wait(remaining)
            job = min((self._jobs[j] for j in self._queued), key=job_rank)
            self._queued.discard(job.job_id)
            job.status = "running"
            job.started = time.time()
            logger.info("worker %s claimed job %s (edge %s)", worker_id, job.job_id, job.edge_id)
            return copy_job(job)

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

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release; state stays readable until the object is dropped."""
