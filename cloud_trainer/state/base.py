"""The cloud trainer's state store: one interface, an in-process and a Redis back-end.

Everything the cloud remembers between requests lives behind `StateStore`: registered edges
and their counters, uploaded samples with their JPEGs and teacher labels, the labelling queue,
training jobs and the training manager's per-edge numbers. Services receive a store from the
entry point and never know which back-end they talk to, so the embedded default (one process,
nothing to start) and the scale-out shape (many processes sharing one Redis) run the same code.

Jobs are leased, not just handed out. `claim_job` gives a worker a job together with a lease on
the job's edge (a token in `job.lease`, valid `lease_s` seconds): while it holds it no other
worker trains that edge. The worker renews the lease by heartbeat (`renew_lease`) and writes
the outcome with `complete_job`, which succeeds only while the claim is still its own (fencing).
A worker that stops renewing (killed, crashed, cut off) loses the job once the lease expires:
the next `claim_job` anywhere takes it over (`attempts` + 1) and resumes it from its checkpoint.

Both back-ends are thread-safe and return copies: mutating a returned object never changes
the store until it is written back.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any

import grpc

from edgesync.errors import InvalidInput, TryLater
from edgesync.types import (
    EVENT_KINDS,
    Detection,
    EdgeEvent,
    EdgeInfo,
    StoredSample,
    TrainingJob,
    check_edge_id,
)

DEFAULT_MAX_SAMPLES_PER_EDGE = 5000
DEFAULT_MAX_EVENTS = 2000  # per edge and kind: about 3 hours of heartbeats every 5 s
DEFAULT_LEASE_S = 30.0  # how long a claim lasts without a heartbeat before another worker may take it over


class StoreUnavailable(TryLater):
    """The state back-end (e.g. Redis) cannot be reached; the message names where it was sought."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class StateStore(ABC):
    """Shared state of the cloud trainer: edges, samples, labelling queue, jobs, manager metadata.

    Samples are stored once per (edge_id, sample_id), so an edge may retry an upload freely.
    Each stored sample gets `seq` 1, 2, ... per edge in arrival order; beyond
    `max_samples_per_edge` the oldest (lowest seq) are dropped. Queued jobs are claimed highest
    priority first, ties oldest `created` first, never while another job of the same edge holds
    a live lease, and no job is held by two claims at once.
    """

    def __init__(self, max_samples_per_edge: int = DEFAULT_MAX_SAMPLES_PER_EDGE) -> None:
        if max_samples_per_edge < 1:
            raise ValueError(f"max_samples_per_edge must be >= 1, got {max_samples_per_edge}")
        self.max_samples_per_edge = max_samples_per_edge

    # ------------------------------------------------------------------ edges

    @abstractmethod
    def upsert_edge(self, info: EdgeInfo) -> None:
        """Insert or replace everything known about one edge."""

    @abstractmethod
    def get_edge(self, edge_id: str) -> EdgeInfo:
        """The edge's info; raises UnknownEdge naming the id if it was never registered."""

    @abstractmethod
    def list_edges(self) -> list[EdgeInfo]:
        """All registered edges, sorted by edge id."""

    @abstractmethod
    def update_edge(self, edge_id: str, **fields: Any) -> None:
        """Set some EdgeInfo attributes; UnknownEdge if absent, ValueError for a bad attribute."""

    @abstractmethod
    def incr_edge(self, edge_id: str, field: str, amount: int = 1) -> int:
        """Atomically add amount to an integer EdgeInfo counter and return the new value."""

    # ------------------------------------------------------------------ samples

    @abstractmethod
    def add_sample(self, sample: StoredSample, jpeg: bytes) -> bool:
        """Store a sample once, queue it for labelling and count it on its edge (samples_received,
        uplink_bytes, if the edge is registered) in one step; False if it is already stored.

        Sets `sample.seq` to its arrival number for the edge when stored. A duplicate is
        recognised while the original is still held (i.e. not yet trimmed).
        """

    @abstractmethod
    def take_unlabelled(self, max_items: int, timeout_s: float) -> list[StoredSample]:
        """Pop up to max_items from the labelling queue (FIFO across edges).

        Waits up to timeout_s for the first item; returns [] if none came. Samples trimmed
        since they were queued are skipped.
        """

    @abstractmethod
    def get_sample(self, edge_id: str, sample_id: str) -> StoredSample:
        """One stored sample (without its JPEG); NotFound if it is not (or no longer) stored."""

    @abstractmethod
    def get_jpeg(self, edge_id: str, sample_id: str) -> bytes:
        """The sample's JPEG bytes; NotFound if it is not (or no longer) stored."""

    @abstractmethod
    def set_labels(self, edge_id: str, sample_id: str, labels: list[Detection]) -> None:
        """Attach teacher labels to a stored sample, making it `labelled`; NotFound if absent."""

    @abstractmethod
    def list_samples(
        self,
        edge_id: str,
        *,
        labelled: bool | None = None,
        min_seq: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredSample]:
        """The edge's samples with seq >= min_seq, ordered by seq (oldest first unless newest_first).

        labelled=True/False keeps only labelled/unlabelled ones; limit caps the count, taken
        from the start of the chosen order (so newest_first=True, limit=n gives the n newest).
        """

    @abstractmethod
    def count_samples(self, edge_id: str, *, labelled: bool | None = None, min_seq: int = 0) -> int:
        """How many samples list_samples would return with the same filters and no limit."""

    # ------------------------------------------------------------------ jobs

    @abstractmethod
    def put_job(self, job: TrainingJob) -> None:
        """Insert or replace a job by job_id; a job with status "queued" becomes claimable."""

    @abstractmethod
    def reprioritize_job(self, job_id: str, priority: float) -> bool:
        """Change a job's priority only while it is still queued; False if it was claimed or finished."""

    @abstractmethod
    def claim_job(self, worker_id: str, timeout_s: float, lease_s: float = DEFAULT_LEASE_S) -> TrainingJob | None:
        """Atomically take a job, lease its edge to worker_id for lease_s seconds, and return it running.

        A running job whose lease expired (its worker stopped renewing) is taken over first,
        keeping its id so the new worker resumes it; otherwise the best queued job whose edge
        holds no live lease (highest priority, ties oldest created). The returned job carries
        worker_id, a fresh lease token, attempts + 1 and its first start time. Waits up to
        timeout_s for one to become claimable. Every worker of a deployment should use the same
        lease_s (CloudConfig.lease_s): a claim is judged lapsed by the claimer's lease_s.
        """

    @abstractmethod
    def renew_lease(self, job: TrainingJob, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Extend the claim job.lease for lease_s more seconds (heartbeat, and the fence before
        registering a model).

        False if the claim is no longer this one's to hold: another worker took the job over,
        another job of the edge took the lapsed lease, or the job was completed or re-put. The
        holder must then stop and write nothing. A lapsed lease nobody has taken is renewed.
        """

    @abstractmethod
    def complete_job(self, job: TrainingJob) -> bool:
        """Write back the outcome of the claim job.lease and release its edge, if it still holds it.

        Status done or failed finishes the job; queued puts it back in the queue. False, and
        nothing written, if the claim was lost (see renew_lease).
        """

    @abstractmethod
    def update_job(self, job: TrainingJob) -> None:
        """Write back a job's new state (status, metrics, ...) unconditionally; NotFound if it was
        never put. A running job moved to another status loses its lease (no fencing: for tools
        and the single-threaded benchmark; workers use complete_job)."""

    @abstractmethod
    def get_job(self, job_id: str) -> TrainingJob:
        """The job; NotFound if there is none with that id."""

    @abstractmethod
    def list_jobs(
        self, *, status: str | None = None, edge_id: str | None = None, limit: int = 100
    ) -> list[TrainingJob]:
        """Jobs newest created first, optionally only one status and/or one edge."""

    @abstractmethod
    def queued_job_for(self, edge_id: str) -> TrainingJob | None:
        """The edge's queued job that would be claimed first, or None if it has none queued."""

    # ------------------------------------------------------------------ manager metadata

    @abstractmethod
    def get_meta(self, edge_id: str) -> dict[str, float]:
        """The training manager's numbers for an edge ({} if none were set)."""

    @abstractmethod
    def set_meta(self, edge_id: str, **values: float) -> None:
        """Set (merge) some of the training manager's numbers for an edge."""

    # ------------------------------------------------------------------ events

    @abstractmethod
    def add_event(self, event: EdgeEvent) -> None:
        """Append to the edge's history of event.kind; the oldest beyond DEFAULT_MAX_EVENTS go."""

    @abstractmethod
    def list_events(self, edge_id: str, kind: str, *, since: float = 0.0, limit: int = 500) -> list[EdgeEvent]:
        """The edge's newest `limit` events of one kind with time >= since, oldest first."""

    # ------------------------------------------------------------------ lifecycle

    @abstractmethod
    def ping(self) -> bool:
        """True if the back-end answers now."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------------- shared helpers

EDGE_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(EdgeInfo)  # attribute -> int, float, str, list[str]
INT_EDGE_FIELDS = frozenset(name for name, tp in EDGE_FIELD_TYPES.items() if tp is int)


def coerce_edge_fields(edge_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Check update_edge's fields are EdgeInfo attributes and convert them to their declared types."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in EDGE_FIELD_TYPES:
            known = ", ".join(sorted(EDGE_FIELD_TYPES))
            raise ValueError(f"edge {edge_id!r}: EdgeInfo has no attribute {name!r} (known: {known})")
        if name == "edge_id":
            raise ValueError(f"edge {edge_id!r}: edge_id cannot be changed by update_edge")
        tp = EDGE_FIELD_TYPES[name]
        if tp is int or tp is float or tp is str:
            out[name] = tp(value)
        else:  # list[str]
            out[name] = [str(v) for v in value]
    return out


def check_int_edge_field(edge_id: str, field: str) -> None:
    """Raise ValueError unless field is an integer counter of EdgeInfo."""
    if field not in INT_EDGE_FIELDS:
        raise ValueError(f"edge {edge_id!r}: cannot increment {field!r}; integer fields are {sorted(INT_EDGE_FIELDS)}")


def copy_edge(info: EdgeInfo) -> EdgeInfo:
    """An independent copy of info."""
    return dataclasses.replace(info, class_names=list(info.class_names))


def copy_sample(sample: StoredSample) -> StoredSample:
    """An independent copy of sample (Detections are immutable, their lists are copied)."""
    labels = None if sample.labels is None else list(sample.labels)
    return dataclasses.replace(sample, student=list(sample.student), labels=labels)


def copy_job(job: TrainingJob) -> TrainingJob:
    """An independent copy of job."""
    return dataclasses.replace(job, metrics=dict(job.metrics))


def new_lease_token(worker_id: str) -> str:
    """A token naming one claim: unique, and readable in logs (the worker's id first)."""
    return f"{worker_id}/{uuid.uuid4().hex[:16]}"


def claimed(job: TrainingJob, worker_id: str, token: str, now: float, *, takeover: bool) -> TrainingJob:
    """job as a new claim leaves it: running under worker_id and token, one more attempt.

    A takeover keeps the first start time: the job is the same run, resumed.
    """
    job.status = "running"
    job.worker_id = worker_id
    job.lease = token
    job.attempts += 1
    if not (takeover and job.started):
        job.started = now
    return job


def job_rank(job: TrainingJob) -> tuple[float, float, str]:
    """Sort key: smallest first is the job to claim first (highest priority, then oldest)."""
    return (-job.priority, job.created, job.job_id)


def labels_to_json(labels: list[Detection] | None) -> list[list[float]] | None:
    """Detections as JSON-ready lists, keeping None (not labelled) distinct from [] (no boxes)."""
    return None if labels is None else [d.as_list() for d in labels]


def labels_from_json(values: list[list[float]] | None) -> list[Detection] | None:
    """Inverse of labels_to_json."""
    return None if values is None else [Detection.from_list(v) for v in values]


def sample_to_json(sample: StoredSample) -> dict[str, Any]:
    """A StoredSample as a JSON-ready dict (Detections as lists)."""
    data = dataclasses.asdict(sample)
    data["student"] = labels_to_json(sample.student)
    data["labels"] = labels_to_json(sample.labels)
    return data


def sample_from_json(data: dict[str, Any]) -> StoredSample:
    """Inverse of sample_to_json."""
    fields = dict(data)
    fields["student"] = labels_from_json(fields["student"]) or []
    fields["labels"] = labels_from_json(fields.get("labels"))
    return StoredSample(**fields)


def check_event(event: EdgeEvent) -> EdgeEvent:
    """Return event if its kind is known and its edge id valid."""
    if event.kind not in EVENT_KINDS:
        raise InvalidInput(f"unknown event kind {event.kind!r}; known: {', '.join(EVENT_KINDS)}")
    check_edge_id(event.edge_id)
    return event


def check_sample_id(sample_id: str) -> str:
    """Return sample_id if it is usable as a key (non-empty, no control characters)."""
    if not sample_id or len(sample_id) > 256 or not sample_id.isprintable():
        raise InvalidInput(f"invalid sample id {sample_id!r}: use 1-256 printable characters")
    return sample_id
