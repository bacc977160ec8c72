"""The Redis job queue: priority order, a stream with a consumer group, per-edge leases.

Priority and a stream. A Redis stream hands entries out in arrival order, while the training
manager ranks jobs by predicted gain and staleness and re-ranks them while they wait. So the
two jobs are split: a sorted set holds the queued jobs in claim order (score = -priority, ties
oldest first), and the stream carries "work available" tokens, one XADD per job that becomes
queued (and one whenever a lease is released while jobs wait). A worker reads a token with
XREADGROUP, then one Lua script picks the best queued job whose edge holds no live lease,
takes that edge's lease and binds the job to the token. Re-ranking is a ZADD on the sorted set
and never touches the stream. A token that finds nothing to claim (a re-put job's extra token,
or every queued job's edge busy) is acknowledged and deleted: the lease's release adds another.

Crash recovery. The token stays pending in the consumer group while its job runs: the worker's
heartbeat re-claims it (XCLAIM ... JUSTID resets its idle time) and renews the edge lease
(SET ... PX). A worker that dies stops both; once the entry has been idle longer than the lease,
any worker's XAUTOCLAIM picks it up, and if the edge lease has lapsed too it takes the job over
under a new token (attempts + 1) and resumes it from its checkpoint. A token read by a worker
that died before binding it is simply spent again. Finishing acknowledges and deletes the
entry, so the stream only ever holds unread and in-flight tokens.

Fencing. The claim holding a running job is recorded as ``{token} {entry}`` in an owners
hash. renew_lease and complete_job act only if that record still names the caller's token
(and the edge lease is the caller's or lapsed); a worker that was presumed dead and comes back
finds its job taken over, so its result is neither registered nor written.

Keys, all under the store's prefix ``{p}``:

=============================  ======  ============================================================
key                            type    holds
=============================  ======  ============================================================
``{p}:job:{job_id}``           string  TrainingJob.to_json as JSON
``{p}:jobs``                   zset    all job ids, score = created
``{p}:jobs:edge:{edge}``       zset    the edge's job ids, score = created
``{p}:jobs:queued``            zset    claimable jobs: member ``{created:020.6f}|{job_id}``,
                                       score = -priority (ZRANGE order is claim order)
``{p}:jobs:stream``            stream  work-available tokens; consumer group ``workers``,
                                       consumer = worker id
``{p}:jobs:entries``           hash    stream entry id -> the job id its claim took
``{p}:jobs:owners``            hash    running job id -> ``{lease token} {stream entry id}``
``{p}:lease:{edge}``           string  the lease token of the claim training the edge, PX lease
=============================  ======  ============================================================

The pick script reads job and lease keys it computes itself, so this needs a single Redis (or a
primary with replicas), not Redis Cluster, like the rest of the store.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from redis.client import Pipeline

from cloud_trainer.state.base import DEFAULT_LEASE_S, claimed, new_lease_token
from cloud_trainer.state.redis_common import BLOCK_CHUNK_S, MIN_BLOCK_S, available
from edgesync.errors import NotFound
from edgesync.types import TrainingJob

logger = logging.getLogger(__name__)

GROUP = "workers"
_LIST_PAGE = 200
_PICK_SCAN = 200  # queued jobs a claim looks through for one whose edge is free
_RECLAIM_PAGE = 16
# an entry is reclaimed this long after its lease would lapse, so the edge lease (set in the same
# script as the entry's idle clock) has surely expired when the entry is looked at
_RECLAIM_MARGIN_MS = 100

# Lua helper: drop a running job's claim (owner record, stream entry, its edge lease if still
# that claim's). Only the claim named by `token`, unless token is ''.
_RELEASE_FN = """
local function release(owners, entries, stream, lease_key, job_id, group, token)
  local owner = redis.call('HGET', owners, job_id)
  if not owner then return 0 end
  local sp = string.find(owner, ' ', 1, true)
  local held, entry = string.sub(owner, 1, sp - 1), string.sub(owner, sp + 1)
  if token ~= '' and held ~= token then return 0 end
  redis.call('HDEL', owners, job_id)
  redis.call('HDEL', entries, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
  if redis.call('GET', lease_key) == held then redis.call('DEL', lease_key) end
  return 1
end
"""

# KEYS: owners, entries, stream, edge lease, queued.  ARGV: job_id, group, token ('' = any)
_RELEASE = (
    _RELEASE_FN
    + """
local done = release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
if done == 1 and redis.call('ZCARD', KEYS[5]) > 0 then redis.call('XADD', KEYS[3], '*', 'job', ARGV[1]) end
return done
"""
)

# The best queued job whose edge is free: lease the edge, bind the job to the token's entry.
# KEYS: queued, owners, entries.  ARGV: key prefix, lease token, lease ms, entry id, scan limit
_PICK = """
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)) do
  local job_id = string.sub(member, string.find(member, '|', 1, true) + 1)
  local raw = redis.call('GET', ARGV[1] .. ':job:' .. job_id)
  if not raw then
    redis.call('ZREM', KEYS[1], member)
  else
    local edge = cjson.decode(raw)['edge_id']
    if redis.call('SET', ARGV[1] .. ':lease:' .. edge, ARGV[2], 'NX', 'PX', ARGV[3]) then
      redis.call('ZREM', KEYS[1], member)
      redis.call('HSET', KEYS[2], job_id, ARGV[2] .. ' ' .. ARGV[4])
      redis.call('HSET', KEYS[3], ARGV[4], job_id)
      return job_id
    end
  end
end
return false
"""

# Take over a running job whose claim lapsed.  KEYS: owners, edge lease.
# ARGV: job_id, entry id, new token, lease ms.  1 taken, 0 no claim holds it, -1 edge still leased
_TAKE_OVER = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
return 1
"""

# Heartbeat and fence.  KEYS: owners, edge lease, stream.  ARGV: job_id, token, lease ms, group, consumer
_RENEW = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then return 0 end
local sp = string.find(owner, ' ', 1, true)
if string.sub(owner, 1, sp - 1) ~= ARGV[2] then return 0 end
local current = redis.call('GET', KEYS[2])
if current and current ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('XCLAIM', KEYS[3], ARGV[4], ARGV[5], 0, string.sub(owner, sp + 1), 'JUSTID')
return 1
"""

# Fenced write of a claim's outcome.  KEYS: job, owners, entries, stream, edge lease, queued.
# ARGV: job_id, token, job JSON, '1' to requeue, queue member, queue score, group
_COMPLETE = (
    _RELEASE_FN
    + """
if release(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[7], ARGV[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5]) end
if redis.call('ZCARD', KEYS[6]) > 0 then redis.call('XADD', KEYS[4], '*', 'job', ARGV[1]) end
return 1
"""
)

# Compare-and-set of a job's JSON, dropping its queue entry.  KEYS: job, queued.
# ARGV: JSON as read, JSON to write, queue member of the JSON as read
_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
"""


def queue_member(job: TrainingJob) -> bytes:
    """Member of {p}:jobs:queued: sorts oldest created first among jobs of equal priority."""
    return f"{max(job.created, 0.0):020.6f}|{job.job_id}".encode()


def job_json(job: TrainingJob) -> bytes:
    return json.dumps(job.to_json(), separators=(",", ":")).encode()


def job_from(raw: bytes) -> TrainingJob:
    return TrainingJob.from_json(json.loads(raw))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisJobQueue:
    """The job half of RedisStore (a mixin: the store supplies the client, prefix and URL)."""

    _r: redis.Redis
    prefix: str
    url: str

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _init_jobs(self) -> None:
        self._release = self._r.register_script(_RELEASE)
        self._pick = self._r.register_script(_PICK)
        self._take_over = self._r.register_script(_TAKE_OVER)
        self._renew = self._r.register_script(_RENEW)
        self._complete = self._r.register_script(_COMPLETE)
        self._cas = self._r.register_script(_CAS)
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self._r.xgroup_create(self._k("jobs", "stream"), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim_keys(self) -> list[str]:
        return [self._k("jobs", "owners"), self._k("jobs", "entries"), self._k("jobs", "stream")]

    # ------------------------------------------------------------------ writes

    def _write_job(self, job: TrainingJob, *, must_exist: bool) -> None:
        key = self._k("job", job.job_id)
        raw = job_json(job)

        def write(pipe: Pipeline) -> None:
            old_raw = pipe.get(key)  # WATCHed: EXEC fails (and this reruns) if it changes
            if old_raw is None and must_exist:
                raise NotFound(f"no training job {job.job_id!r} to update")
            old = job_from(old_raw) if old_raw is not None else None
            pipe.multi()
            if old is not None:
                pipe.zrem(self._k("jobs", "queued"), queue_member(old))
                if old.edge_id != job.edge_id:
                    pipe.zrem(self._k("jobs", "edge", old.edge_id), job.job_id)
            pipe.set(key, raw)
            pipe.zadd(self._k("jobs"), {job.job_id: job.created})
            pipe.zadd(self._k("jobs", "edge", job.edge_id), {job.job_id: job.created})
            if job.status == "queued":
                pipe.zadd(self._k("jobs", "queued"), {queue_member(job): -job.priority})
                pipe.xadd(self._k("jobs", "stream"), {"job": job.job_id})
            if old is not None and old.status == "running" and job.status != "running":
                keys = [*self._claim_keys(), self._k("lease", old.edge_id), self._k("jobs", "queued")]
                self._release(keys=keys, args=[job.job_id, GROUP, ""], client=pipe)

        self._r.transaction(write, key)

    @available
    def put_job(self, job: TrainingJob) -> None:
        self._write_job(job, must_exist=False)

    @available
    def update_job(self, job: TrainingJob) -> None:
        self._write_job(job, must_exist=True)

    @available
    def reprioritize_job(self, job_id: str, priority: float) -> bool:
        key = self._k("job", job_id)
        changed = False

        def write(pipe: Pipeline) -> None:
            nonlocal changed
            raw = pipe.get(key)  # WATCHed: a claim in between makes EXEC fail and this rerun
            job = job_from(raw) if raw is not None else None
            changed = job is not None and job.status == "queued"
            if not changed:
                return
            assert job is not None
            job.priority = priority
            pipe.multi()
            pipe.set(key, job_json(job))
            pipe.zadd(self._k("jobs", "queued"), {queue_member(job): -priority})

        self._r.transaction(write, key)
        return changed

    # ------------------------------------------------------------------ claims

    @available
    def claim_job(self, worker_id: str, timeout_s: float, lease_s: float = DEFAULT_LEASE_S) -> TrainingJob | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        # wait in slices: lapsed claims are looked for between them, not only when a token comes
        chunk = min(BLOCK_CHUNK_S, max(lease_s / 3, MIN_BLOCK_S))
        while True:
            job = self._reclaim(worker_id, lease_s)
            if job is not None:
                return job
            remaining = deadline - time.monotonic()
            entry = self._read_token(worker_id, min(remaining, chunk) if remaining > 0 else None)
            if entry is not None:
                job = self._claim_token(entry, worker_id, lease_s)
                if job is not None:
                    return job
                continue  # a spent token: look at the next one straight away
            if remaining <= 0:
                return None

    def _read_token(self, worker_id: str, block_s: float | None) -> str | None:
        """One unread token for this consumer, waiting up to block_s (None: do not wait)."""
        stream = self._k("jobs", "stream")
        block = None if block_s is None else _ms(max(block_s, MIN_BLOCK_S))
        try:
            got = self._r.xreadgroup(GROUP, worker_id, {stream: ">"}, count=1, block=block)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group()  # the stream was deleted (e.g. FLUSHDB): start it again
            return None
        for _, entries in got or []:
            for entry_id, _fields in entries:
                return entry_id.decode()
        return None

    def _reclaim(self, worker_id: str, lease_s: float) -> TrainingJob | None:
        """Take over a job whose claim went quiet for longer than lease_s, if there is one."""
        stream, cursor = self._k("jobs", "stream"), "0-0"
        for _ in range(_RECLAIM_PAGE):
            try:
                idle_ms = _ms(lease_s) + _RECLAIM_MARGIN_MS
                reply = self._r.xautoclaim(stream, GROUP, worker_id, idle_ms, cursor, count=_RECLAIM_PAGE)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._ensure_group()
                return None
            for entry_id, _fields in reply[1]:
                job = self._resume_entry(entry_id.decode(), worker_id, lease_s)
                if job is not None:
                    return job
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if cursor == "0-0":
                return None
        return None

    def _resume_entry(self, entry: str, worker_id: str, lease_s: float) -> TrainingJob | None:
        job_id = self._r.hget(self._k("jobs", "entries"), entry)
        if job_id is None:  # its reader died before a job was bound to it: spend it now
            return self._claim_token(entry, worker_id, lease_s)
        job_id = job_id.decode()
        raw = self._r.get(self._k("job", job_id))
        if raw is None:
            self._ack(entry)
            return None
        token = new_lease_token(worker_id)
        keys = [self._k("jobs", "owners"), self._k("lease", job_from(raw).edge_id)]
        taken = self._take_over(keys=keys, args=[job_id, entry, token, _ms(lease_s)])
        if taken == 0:  # finished or put back meanwhile: the token is spent
            self._ack(entry)
            return None
        if taken < 0:  # the edge's lease is still live: its holder (or another job) trains it
            return None
        return self._mark_claimed(job_id, worker_id, token, takeover=True)

    def _claim_token(self, entry: str, worker_id: str, lease_s: float) -> TrainingJob | None:
        token = new_lease_token(worker_id)
        keys = [self._k("jobs", "queued"), self._k("jobs", "owners"), self._k("jobs", "entries")]
        job_id = self._pick(keys=keys, args=[self.prefix, token, _ms(lease_s), entry, _PICK_SCAN])
        if not job_id:
            self._ack(entry)
            return None
        return self._mark_claimed(job_id.decode(), worker_id, token, takeover=False)

    def _mark_claimed(self, job_id: str, worker_id: str, token: str, *, takeover: bool) -> TrainingJob | None:
        """Write the claim into the job's JSON (compare-and-set); None, claim dropped, if it ended meanwhile."""
        key = self._k("job", job_id)
        while True:
            raw = self._r.get(key)
            job = job_from(raw) if raw is not None else None
            if job is None or job.status in ("done", "failed"):
                edge_id = job.edge_id if job is not None else ""
                keys = [*self._claim_keys(), self._k("lease", edge_id), self._k("jobs", "queued")]
                self._release(keys=keys, args=[job_id, GROUP, token])
                return None
            member = queue_member(job)
            claimed(job, worker_id, token, time.time(), takeover=takeover)
            if self._cas(keys=[key, self._k("jobs", "queued")], args=[raw, job_json(job), member]):
                verb = "took over" if takeover else "claimed"
                logger.info(
                    "worker %s %s job %s (edge %s, attempt %d)", worker_id, verb, job_id, job.edge_id, job.attempts
                )
                return job
            # the job changed between GET and the script (re-put, re-ranked): read it again

    def _ack(self, entry: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.xack(self._k("jobs", "stream"), GROUP, entry)
        pipe.xdel(self._k("jobs", "stream"), entry)
        pipe.hdel(self._k("jobs", "entries"), entry)
        pipe.execute()

    @available
    def renew_lease(self, job: TrainingJob, lease_s: float = DEFAULT_LEASE_S) -> bool:
        if not job.lease:
            return False
        keys = [self._k("jobs", "owners"), self._k("lease", job.edge_id), self._k("jobs", "stream")]
        args = [job.job_id, job.lease, _ms(lease_s), GROUP, job.worker_id or "worker"]
        return bool(self._renew(keys=keys, args=args))

    @available
    def complete_job(self, job: TrainingJob) -> bool:
        if not job.lease:
            return False
        keys = [
            self._k("job", job.job_id),
            *self._claim_keys(),
            self._k("lease", job.edge_id),
            self._k("jobs", "queued"),
        ]
        requeue = "1" if job.status == "queued" else ""
        args: list[Any] = [job.job_id, job.lease, job_json(job), requeue, queue_member(job), -job.priority, GROUP]
        return bool(self._complete(keys=keys, args=args))

    # ------------------------------------------------------------------ reads

    @available
    def get_job(self, job_id: str) -> TrainingJob:
        raw = self._r.get(self._k("job", job_id))
        if raw is None:
            raise NotFound(f"no training job {job_id!r}")
        return job_from(raw)

    @available
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
                job = job_from(raw)
                if status is None or job.status == status:
                    out.append(job)
        return out[: max(limit, 0)]

    @available
    def queued_job_for(self, edge_id: str) -> TrainingJob | None:
        members = self._r.zrange(self._k("jobs", "queued"), 0, -1)
        if not members:
            return None
        keys = [self._k("job", m.split(b"|", 1)[1].decode()) for m in members]
        for raw in self._r.mget(keys):  # in claim order
            if raw is None:
                continue
            job = job_from(raw)
            if job.edge_id == edge_id and job.status == "queued":
                return job
        return None
