"""Redis state store: many front ends and workers, in any number of processes, share one Redis.

Every multi-key change is one Lua script or one MULTI/EXEC transaction, so processes never see
half a write, a retried upload is stored once, and a job is claimed by exactly one worker.
Needs Redis >= 6.2 (fractional blocking timeouts, LPOP with a count); a single Redis or a
primary with replicas, not Redis Cluster (scripts touch keys of several edges).

Key layout, all under the configured prefix ``{p}``:

====================================  ======  ===================================================
key                                   type    holds
====================================  ======  ===================================================
``{p}:edges``                         set     ids of registered edges
``{p}:edge:{edge}``                   hash    EdgeInfo attributes (numbers as text, class_names
                                              as a JSON list)
``{p}:seq:{edge}``                    string  last sample seq given to the edge (INCR)
``{p}:sample:{edge}:{sample_id}``     hash    ``meta`` (StoredSample JSON without seq/labels),
                                              ``jpeg`` (bytes), ``seq``, ``labels`` (JSON list of
                                              Detection.as_list, present once labelled)
``{p}:samples:{edge}``                zset    all stored sample ids, score = seq
``{p}:samples:{edge}:labelled``       zset    labelled sample ids, score = seq
``{p}:samples:{edge}:unlabelled``     zset    unlabelled sample ids, score = seq
``{p}:labelq``                        list    JSON ``[edge, sample_id]`` awaiting the teacher
                                              (RPUSH on arrival, BLPOP/LPOP to take)
``{p}:job:{job_id}``                  string  TrainingJob.to_json as JSON
``{p}:jobs``                          zset    all job ids, score = created
``{p}:jobs:edge:{edge}``              zset    the edge's job ids, score = created
``{p}:jobs:queued``                   zset    claimable jobs: member ``{created:020.6f}|{job_id}``,
                                              score = -priority, so ZPOPMIN gives the highest
                                              priority and, among equals, the oldest
``{p}:meta:{edge}``                   hash    the training manager's per-edge floats
====================================  ======  ===================================================

Limits: a job popped from ``{p}:jobs:queued`` by a worker that dies before marking it running
stays "queued" without a queue entry (put_job it again to requeue); a labelling-queue entry
taken by a labeller that dies is not retaken, though the sample stays listed as unlabelled.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.client import Pipeline

from cloud_trainer.state.base import (
    DEFAULT_MAX_SAMPLES_PER_EDGE,
    EDGE_FIELD_TYPES,
    StateStore,
    StoreUnavailable,
    check_int_edge_field,
    check_sample_id,
    coerce_edge_fields,
    labels_to_json,
    sample_from_json,
    sample_to_json,
)
from edgesync.errors import ConfigError, NotFound, UnknownEdge
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob, check_edge_id

logger = logging.getLogger(__name__)

# Blocking commands wait at most this long per call, well under the socket timeout,
# and are repeated until the caller's own timeout has passed.
_BLOCK_CHUNK_S = 5.0
_MIN_BLOCK_S = 0.01  # Redis treats a blocking timeout that rounds to 0 ms as "forever"
_LIST_PAGE = 200

# KEYS: sample hash, all zset, unlabelled zset, labelled zset, seq counter, labelq
# ARGV: sample_id, meta JSON, jpeg, labelq entry, max samples per edge, sample key prefix
_ADD_SAMPLE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'jpeg', ARGV[3], 'seq', seq)
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('RPUSH', KEYS[6], ARGV[4])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    redis.call('DEL', ARGV[6] .. old)
    redis.call('ZREM', KEYS[2], old)
    redis.call('ZREM', KEYS[3], old)
    redis.call('ZREM', KEYS[4], old)
  end
end
return seq
"""

# KEYS: sample hash, unlabelled zset, labelled zset.  ARGV: sample_id, labels JSON
_SET_LABELS = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return 0 end
redis.call('HSET', KEYS[1], 'labels', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return 1
"""

# KEYS: edge hash.  ARGV: field, value, field, value, ...
_UPDATE_EDGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
"""

# KEYS: edge hash.  ARGV: field, amount
_INCR_EDGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
"""

# Compare-and-set that turns a queued job into a running one.
# KEYS: job key, queued zset.  ARGV: job JSON as read, job JSON to write, its queue member
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
"""

P = ParamSpec("P")
R = TypeVar("R")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to put in logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable redis URL>"


def _available(method: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis connection failures inside a store method into StoreUnavailable naming the URL."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            url = getattr(args[0], "url", "?")
            raise StoreUnavailable(f"Redis at {url} is unreachable: {exc}") from exc

    return wrapper


def _queue_member(job: TrainingJob) -> bytes:
    """Member of {p}:jobs:queued: sorts oldest created first among jobs of equal priority."""
    return f"{max(job.created, 0.0):020.6f}|{job.job_id}".encode()


def _job_json(job: TrainingJob) -> bytes:
    return json.dumps(job.to_json(), separators=(",", ":")).encode()


def _job_from(raw: bytes) -> TrainingJob:
    return TrainingJob.from_json(json.loads(raw))


class RedisStore(StateStore):
    """StateStore in Redis; safe to share between threads and between processes."""

    def __init__(
        self,
        url: str,
        prefix: str = "edgesync",
        max_samples_per_edge: int = DEFAULT_MAX_SAMPLES_PER_EDGE,
        *,
        connect_timeout_s: float = 5.0,
        socket_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(max_samples_per_edge)
        if not prefix or any(c in prefix for c in "*?[] \n"):
            raise ConfigError(f"store.prefix {prefix!r}: use a non-empty name without spaces or *?[]")
        self.url = redact_url(url)
        self.prefix = prefix
        try:
            self._r = redis.Redis.from_url(
                url,
                decode_responses=False,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=max(socket_timeout_s, _BLOCK_CHUNK_S + 5.0),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigError(f"store.url {self.url!r}: {exc}") from None
        try:
            self._r.ping()
        except redis.RedisError as exc:
            self._r.close()
            raise StoreUnavailable(
                f"cannot reach Redis at {self.url} (store.url): {exc}. "
                "Start it (e.g. `redis-server --port 6379`) or use store.type=memory."
            ) from exc
        self._add_sample = self._r.register_script(_ADD_SAMPLE)
        self._set_labels = self._r.register_script(_SET_LABELS)
        self._update_edge = self._r.register_script(_UPDATE_EDGE)
        self._incr_edge = self._r.register_script(_INCR_EDGE)
        self._claim = self._r.register_script(_CLAIM)
        logger.info("state store: Redis at %s, prefix %r", self.url, prefix)

    # ------------------------------------------------------------------ keys

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _sample_zset(self, edge_id: str, labelled: bool | None) -> str:
        if labelled is None:
            return self._k("samples", edge_id)
        return self._k("samples", edge_id, "labelled" if labelled else "unlabelled")

    # ------------------------------------------------------------------ edges

    @staticmethod
    def _encode_edge_value(value: Any) -> bytes:
        if isinstance(value, list):
            return json.dumps(value).encode()
        if isinstance(value, float):
            return repr(value).encode()
        return str(value).encode()

    @staticmethod
    def _decode_edge(raw: dict[bytes, bytes]) -> EdgeInfo:
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            name, text = key.decode(), value.decode()
            kind = EDGE_FIELD_TYPES.get(name)
            if kind is None:
                continue  # written by a newer version with more fields
            fields[name] = kind(text) if kind in (int, float, str) else json.loads(text)
        return EdgeInfo(**fields)

    def _unknown_edge(self, edge_id: str) -> UnknownEdge:
        return UnknownEdge(f"unknown edge {edge_id!r}: it has not registered with this cloud")

    @_available
    def upsert_edge(self, info: EdgeInfo) -> None:
        check_edge_id(info.edge_id)
        mapping = {name: self._encode_edge_value(value) for name, value in info.__dict__.items()}
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k("edge", info.edge_id), mapping=mapping)
        pipe.sadd(self._k("edges"), info.edge_id)
        pipe.execute()

    @_available
    def get_edge(self, edge_id: str) -> EdgeInfo:
        raw = self._r.hgetall(self._k("edge", edge_id))
        if not raw:
            raise self._unknown_edge(edge_id)
        return self._decode_edge(raw)

    @_available
    def list_edges(self) -> list[EdgeInfo]:
        ids = sorted(m.decode() for m in self._r.smembers(self._k("edges")))
        pipe = self._r.pipeline(transaction=False)
        for edge_id in ids:
            pipe.hgetall(self._k("edge", edge_id))
        return [self._decode_edge(raw) for raw in pipe.execute() if raw]

    @_available
    def update_edge(self, edge_id: str, **fields: Any) -> None:
        values = coerce_edge_fields(edge_id, fields)
        args: list[Any] = []
        for name, value in values.items():
            args += [name, self._encode_edge_value(value)]
        if not self._update_edge(keys=[self._k("edge", edge_id)], args=args):
            raise self._unknown_edge(edge_id)

    @_available
    def incr_edge(self, edge_id: str, field: str, amount: int = 1) -> int:
        check_int_edge_field(edge_id, field)
        value = self._incr_edge(keys=[self._k("edge", edge_id)], args=[field, int(amount)])
        if value is None:
            raise self._unknown_edge(edge_id)
        return int(value)

    # ------------------------------------------------------------------ samples

    @_available
    def add_sample(self, sample: StoredSample, jpeg: bytes) -> bool:
        edge_id = check_edge_id(sample.edge_id)
        sample_id = check_sample_id(sample.sample_id)
        meta = sample_to_json(sample)
        del meta["seq"], meta["labels"]
        seq = self._add_sample(
            keys=[
                self._k("sample", edge_id, sample_id),
                self._sample_zset(edge_id, None),
                self._sample_zset(edge_id, False),
                self._sample_zset(edge_id, True),
                self._k("seq", edge_id),
                self._k("labelq"),
            ],
            args=[
                sample_id,
                json.dumps(meta, separators=(",", ":")),
                bytes(jpeg),
                json.dumps([edge_id, sample_id]),
                self.max_samples_per_edge,
                self._k("sample", edge_id, ""),
            ],
        )
        if not seq:
            return False
        sample.seq = int(seq)
        return True

    def _load_samples(self, refs: list[tuple[str, str]]) -> list[StoredSample]:
        """The samples named by (edge_id, sample_id), skipping any no longer stored."""
        pipe = self._r.pipeline(transaction=False)
        for edge_id, sample_id in refs:
            pipe.hmget(self._k("sample", edge_id, sample_id), ["meta", "seq", "labels"])
        out = []
        for meta, seq, labels in pipe.execute():
            if meta is None:
                continue
            data = json.loads(meta)
            data["seq"] = int(seq)
            data["labels"] = None if labels is None else json.loads(labels)
            out.append(sample_from_json(data))
        return out

    def _pop_labelq(self, max_items: int, deadline: float) -> list[bytes]:
        key = self._k("labelq")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                first = self._r.lpop(key)
                break
            got = self._r.blpop([key], timeout=min(max(remaining, _MIN_BLOCK_S), _BLOCK_CHUNK_S))
            if got is not None:
                first = got[1]
                break
        if first is None:
            return []
        rest = self._r.lpop(key, max_items - 1) if max_items > 1 else None
        return [first, *(rest or [])]

    @_available
    def take_unlabelled(self, max_items: int, timeout_s: float) -> list[StoredSample]:
        if max_items <= 0:
            return []
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            entries = self._pop_labelq(max_items, deadline)
            if not entries:
                return []
            samples = self._load_samples([(str(e), str(s)) for e, s in map(json.loads, entries)])
            if samples or time.monotonic() >= deadline:
                return samples  # every entry popped was trimmed: wait on while time is left

    @_available
    def get_jpeg(self, edge_id: str, sample_id: str) -> bytes:
        jpeg = self._r.hget(self._k("sample", edge_id, sample_id), "jpeg")
        if jpeg is None:
            raise NotFound(f"no stored sample {sample_id!r} from edge {edge_id!r}")
        return jpeg

    @_available
    def set_labels(self, edge_id: str, sample_id: str, labels: list[Detection]) -> None:
        done = self._set_labels(
            keys=[
                self._k("sample", edge_id, sample_id),
                self._sample_zset(edge_id, False),
                self._sample_zset(edge_id, True),
            ],
            args=[sample_id, json.dumps(labels_to_json(labels))],
        )
        if not done:
            raise NotFound(f"no stored sample {sample_id!r} from edge {edge_id!r} to label")

    @_available
    def list_samples(
        self,
        edge_id: str,
        *,
        labelled: bool | None = None,
        min_seq: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredSample]:
        if limit is not None and limit <= 0:
            return []
        key = self._sample_zset(edge_id, labelled)
        page: dict[str, int] = {} if limit is None else {"start": 0, "num": limit}
        if newest_first:
            ids = self._r.zrevrangebyscore(key, "+inf", min_seq, **page)
        else:
            ids = self._r.zrangebyscore(key, min_seq, "+inf", **page)
        return self._load_samples([(edge_id, i.decode()) for i in ids])

    @_available
    def count_samples(self, edge_id: str, *, labelled: bool | None = None, min_seq: int = 0) -> int:
        return int(self._r.zcount(self._sample_zset(edge_id, labelled), min_seq, "+inf"))

    # ------------------------------------------------------------------ jobs

    def _write_job(self, job: TrainingJob, *, must_exist: bool) -> None:
        key = self._k("job", job.job_id)
        raw = _job_json(job)

        def write(pipe: Pipeline) -> None:
            old_raw = pipe.get(key)  # WATCHed: EXEC fails (and this reruns) if it changes
            if old_raw is None and must_exist:
                raise NotFound(f"no training job {job.job_id!r} to update")
            pipe.multi()
            if old_raw is not None:
                old = _job_from(old_raw)
                pipe.zrem(self._k("jobs", "queued"), _queue_member(old))
                if old.edge_id != job.edge_id:
                    pipe.zrem(self._k("jobs", "edge", old.edge_id), job.job_id)
            pipe.set(key, raw)
            pipe.zadd(self._k("jobs"), {job.job_id: job.created})
            pipe.zadd(self._k("jobs", "edge", job.edge_id), {job.job_id: job.created})
            if job.status == "queued":
                pipe.zadd(self._k("jobs", "queued"), {_queue_member(job): -job.priority})

        self._r.transaction(write, key)

    @_available
    def put_job(self, job: TrainingJob) -> None:
        self._write_job(job, must_exist=False)

    @_available
    def reprioritize_job(self, job_id: str, priority: float) -> bool:
        key = self._k("job", job_id)
        changed = False

        def write(pipe: Pipeline) -> None:
            nonlocal changed
            raw = pipe.get(key)  # WATCHed: a claim in between makes EXEC fail and this rerun
            job = _job_from(raw) if raw is not None else None
            changed = job is not None and job.status == "queued"
            if not changed:
                return
            job.priority = priority
            pipe.multi()
            pipe.set(key, _job_json(job))
            pipe.zadd(self._k("jobs", "queued"), {_queue_member(job): -priority})

        self._r.transaction(write, key)
        return changed

    @_available
    def update_job(self, job: TrainingJob) -> None:
        self._write_job(job, must_exist=True)

    def _pop_queued(self, deadline: float) -> bytes | None:
        """Pop the best member of the queued zset, waiting until deadline for one."""
        key = self._k("jobs", "queued")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                popped = self._r.zpopmin(key, 1)
                return popped[0][0] if popped else None
            got = self._r.bzpopmin(key, timeout=min(max(remaining, _MIN_BLOCK_S), _BLOCK_CHUNK_S))
            if got is not None:
                return got[1]

    def _mark_running(self, job_id: str, worker_id: str) -> TrainingJob | None:
        """Compare-and-set job_id from queued to running; None if it is no longer queued."""
        key = self._k("job", job_id)
        while True:
            raw = self._r.get(key)
            if raw is None:
                return None
            job = _job_from(raw)
            if job.status != "queued":
                return None  # a stale queue entry: someone claimed or finished it already
            member = _queue_member(job)
            job.status = "running"
            job.started = time.time()
            if self._claim(keys=[key, self._k("jobs", "queued")], args=[raw, _job_json(job), member]):
                logger.info("worker %s claimed job %s (edge %s)", worker_id, job_id, job.edge_id)
                return job
            # the job changed between GET and the script (e.g. re-put): read it again

    @_available
    def claim_job(self, worker_id: str, timeout_s: float) -> TrainingJob | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            member = self._pop_queued(deadline)
            if member is None:
                return None
            job = self._mark_running(member.split(b"|", 1)[1].decode(), worker_id)
            if job is not None:
                return job

    @_available
    def get_job(self, job_id: str) -> TrainingJob:
        raw = self._r.get(self._k("job", job_id))
        if raw is None:
            raise NotFound(f"no training job {job_id!r}")
        return _job_from(raw)

    @_available
    def list_jobs(
        self, *, status: str | None = None, edge_id: str | None = None, limit: int = 100
    ) -> list[TrainingJob]:
        index = self._k("jobs") if edge_id is None else self._k("jobs", "edge", edge_id)
        out: list[TrainingJob] = []
        start = 0
        while len(out) < limit:
            ids = self._r.zrevrange(index, start, start + _LIST_PAGE - 1)
            if not ids:
                break
            start += len(ids)
            for raw in self._r.mget([self._k("job", i.decode()) for i in ids]):
                if raw is None:
                    continue
                job = _job_from(raw)
                if status is None or job.status == status:
                    out.append(job)
        return out[: max(limit, 0)]

    @_available
    def queued_job_for(self, edge_id: str) -> TrainingJob | None:
        members = self._r.zrange(self._k("jobs", "queued"), 0, -1)
        if not members:
            return None
        keys = [self._k("job", m.split(b"|", 1)[1].decode()) for m in members]
        for raw in self._r.mget(keys):  # in claim order
            if raw is None:
                continue
            job = _job_from(raw)
            if job.edge_id == edge_id and job.status == "queued":
                return job
        return None

    # ------------------------------------------------------------------ manager metadata

    @_available
    def get_meta(self, edge_id: str) -> dict[str, float]:
        raw = self._r.hgetall(self._k("meta", edge_id))
        return {k.decode(): float(v) for k, v in raw.items()}

    @_available
    def set_meta(self, edge_id: str, **values: float) -> None:
        if values:
            mapping = {k: repr(float(v)) for k, v in values.items()}
            self._r.hset(self._k("meta", edge_id), mapping=mapping)

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._r.close()
