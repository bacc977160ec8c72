"""Redis state store: many front ends and workers, in any number of processes, share one Redis.

Every multi-key change is one Lua script or one MULTI/EXEC transaction, so processes never see
half a write, a retried upload is stored once, and a job is held by exactly one worker's claim.
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
``{p}:meta:{edge}``                   hash    the training manager's per-edge floats
``{p}:events:{edge}:{kind}``          stream  the edge's history of one event kind, field ``e``
                                              (EdgeEvent JSON), capped near DEFAULT_MAX_EVENTS
====================================  ======  ===================================================

Jobs (the queue, the work stream, leases and takeover of a dead worker's job) live in
cloud_trainer.state.redis_jobs, with their keys. Limit: a labelling-queue entry taken by a
labeller that dies is not retaken, though the sample stays listed as unlabelled.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from cloud_trainer.state.base import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_SAMPLES_PER_EDGE,
    EDGE_FIELD_TYPES,
    StateStore,
    StoreUnavailable,
    check_event,
    check_int_edge_field,
    check_sample_id,
    coerce_edge_fields,
    labels_to_json,
    sample_from_json,
    sample_to_json,
)
from cloud_trainer.state.redis_common import BLOCK_CHUNK_S, MIN_BLOCK_S, available, redact_url
from cloud_trainer.state.redis_jobs import RedisJobQueue
from edgesync.errors import ConfigError, NotFound, UnknownEdge
from edgesync.types import Detection, EdgeEvent, EdgeInfo, StoredSample, check_edge_id

logger = logging.getLogger(__name__)

# KEYS: sample hash, all zset, unlabelled zset, labelled zset, seq counter, labelq, edge hash
# ARGV: sample_id, meta JSON, jpeg, labelq entry, max samples per edge, sample key prefix
_ADD_SAMPLE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'jpeg', ARGV[3], 'seq', seq)
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('RPUSH', KEYS[6], ARGV[4])
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('HINCRBY', KEYS[7], 'samples_received', 1)
  redis.call('HINCRBY', KEYS[7], 'uplink_bytes', string.len(ARGV[3]))
end
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


class RedisStore(RedisJobQueue, StateStore):
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
                socket_timeout=max(socket_timeout_s, BLOCK_CHUNK_S + 5.0),
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
        self._init_jobs()
        logger.info("state store: Redis at %s, prefix %r", self.url, prefix)

    # ------------------------------------------------------------------ keys

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

    @available
    def upsert_edge(self, info: EdgeInfo) -> None:
        check_edge_id(info.edge_id)
        mapping = {name: self._encode_edge_value(value) for name, value in info.__dict__.items()}
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k("edge", info.edge_id), mapping=mapping)
        pipe.sadd(self._k("edges"), info.edge_id)
        pipe.execute()

    @available
    def get_edge(self, edge_id: str) -> EdgeInfo:
        raw = self._r.hgetall(self._k("edge", edge_id))
        if not raw:
            raise self._unknown_edge(edge_id)
        return self._decode_edge(raw)

    @available
    def list_edges(self) -> list[EdgeInfo]:
        ids = sorted(m.decode() for m in self._r.smembers(self._k("edges")))
        pipe = self._r.pipeline(transaction=False)
        for edge_id in ids:
            pipe.hgetall(self._k("edge", edge_id))
        return [self._decode_edge(raw) for raw in pipe.execute() if raw]

    @available
    def update_edge(self, edge_id: str, **fields: Any) -> None:
        values = coerce_edge_fields(edge_id, fields)
        args: list[Any] = []
        for name, value in values.items():
            args += [name, self._encode_edge_value(value)]
        if not self._update_edge(keys=[self._k("edge", edge_id)], args=args):
            raise self._unknown_edge(edge_id)

    @available
    def incr_edge(self, edge_id: str, field: str, amount: int = 1) -> int:
        check_int_edge_field(edge_id, field)
        value = self._incr_edge(keys=[self._k("edge", edge_id)], args=[field, int(amount)])
        if value is None:
            raise self._unknown_edge(edge_id)
        return int(value)

    # ------------------------------------------------------------------ samples

    @available
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
                self._k("edge", edge_id),  # counted in the same step: a crash cannot store it uncounted
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
            got = self._r.blpop([key], timeout=min(max(remaining, MIN_BLOCK_S), BLOCK_CHUNK_S))
            if got is not None:
                first = got[1]
                break
        if first is None:
            return []
        rest = self._r.lpop(key, max_items - 1) if max_items > 1 else None
        return [first, *(rest or [])]

    @available
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

    @available
    def get_sample(self, edge_id: str, sample_id: str) -> StoredSample:
        found = self._load_samples([(edge_id, sample_id)])
        if not found:
            raise NotFound(f"no stored sample {sample_id!r} from edge {edge_id!r}")
        return found[0]

    @available
    def get_jpeg(self, edge_id: str, sample_id: str) -> bytes:
        jpeg = self._r.hget(self._k("sample", edge_id, sample_id), "jpeg")
        if jpeg is None:
            raise NotFound(f"no stored sample {sample_id!r} from edge {edge_id!r}")
        return jpeg

    @available
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

    @available
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

    @available
    def count_samples(self, edge_id: str, *, labelled: bool | None = None, min_seq: int = 0) -> int:
        return int(self._r.zcount(self._sample_zset(edge_id, labelled), min_seq, "+inf"))

    # ------------------------------------------------------------------ manager metadata

    @available
    def get_meta(self, edge_id: str) -> dict[str, float]:
        raw = self._r.hgetall(self._k("meta", edge_id))
        return {k.decode(): float(v) for k, v in raw.items()}

    @available
    def set_meta(self, edge_id: str, **values: float) -> None:
        if values:
            mapping = {k: repr(float(v)) for k, v in values.items()}
            self._r.hset(self._k("meta", edge_id), mapping=mapping)

    # ------------------------------------------------------------------ events

    @available
    def add_event(self, event: EdgeEvent) -> None:
        check_event(event)
        key = self._k("events", event.edge_id, event.kind)
        self._r.xadd(key, {"e": json.dumps(event.to_json())}, maxlen=DEFAULT_MAX_EVENTS, approximate=True)

    @available
    def list_events(self, edge_id: str, kind: str, *, since: float = 0.0, limit: int = 500) -> list[EdgeEvent]:
        if limit <= 0:
            return []
        entries = self._r.xrevrange(self._k("events", edge_id, kind), count=limit)
        events = [EdgeEvent.from_json(json.loads(fields[b"e"])) for _, fields in reversed(entries)]
        return [e for e in events if e.time >= since]

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._r.close()
