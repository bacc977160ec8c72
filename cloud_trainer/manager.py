"""The training manager: decides when an edge needs retraining and how urgent it is.

After each labelled batch it updates the edge's live accuracy proxy (the student's own
uploaded detections scored against the teacher's labels of the same frames; of the audit
frames, drawn at random, once the edge sends them), and queues a
job once enough new labelled samples have arrived. A job's priority is its predicted gain
weighted by staleness (how long since the edge last got a model), so the worker serves the edge
with the most to win back for longest first, not the first to ask. With rank "gain_per_frame"
it is divided by the frames the job will train on: the most gain per unit of work goes first.

The predicted gain is the room to gain (1 - live mAP50) times the share of their room that
earlier jobs of the same scene won back (their yield, see scene_yield): room alone is need, not
gain, and a scene whose fine-tunes keep failing (fog, on few frames) would otherwise take the
worker from edges whose jobs succeed.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import StateStore
from edgesync.config import ManagerConfig
from edgesync.evaluation import map50
from edgesync.types import EdgeEvent, SceneChange, StoredSample, TrainingJob, detections_to_array

log = logging.getLogger(__name__)

LIVE_ACCURACY_EMA = 0.3  # weight of the newest batch in the live accuracy proxy
OPERATOR_PRIORITY = 1e9  # a job an operator asked for goes ahead of every job the manager ranked
YIELD_HISTORY = 200  # the fleet's newest finished jobs the expected yield is estimated from


def pinned_version(meta: dict[str, float]) -> int:
    """The version an operator pinned the edge to (cloud_trainer.operations), 0 if none."""
    return int(meta.get("pinned_version", 0))


def is_paused(meta: dict[str, float]) -> bool:
    """Whether an operator stopped training for the edge: paused, or pinned to a version."""
    return bool(meta.get("paused")) or pinned_version(meta) > 0


def job_priority(
    live_map50: float,
    staleness_s: float,
    new_samples: int,
    cfg: ManagerConfig,
    needed: int | None = None,
    yield_share: float = 1.0,
) -> float:
    """Predicted gain (see predicted_gain) x staleness weight x how much new data there is
    (relative to `needed`, by default cfg.min_new_samples)."""
    staleness = 1.0 - math.pow(2.0, -max(staleness_s, 0.0) / cfg.staleness_half_s)
    volume = min(1.0, new_samples / (needed or cfg.min_new_samples))
    return predicted_gain(live_map50, yield_share) * (0.5 + 0.5 * staleness) * volume


def predicted_gain(live_map50: float, yield_share: float = 1.0) -> float:
    """The mAP50 a job is expected to win back: the room the edge has lost (1 - its live
    accuracy proxy) times the share of it that jobs of this scene are expected to win back
    (scene_yield; 1, the upper bound, before any job has been judged). The worker records the
    achieved gain beside it, so the prediction's error can be judged."""
    room = 1.0 - min(max(live_map50, 0.0), 1.0)
    return room * min(max(yield_share, 0.0), 1.0)


def job_yield(job: TrainingJob) -> float | None:
    """The share of its room a finished job won back on its held-out frames: achieved gain over
    (1 - the current model's held-out mAP50), clipped to 0..1 (a rejected job won nothing).
    None for a job that was not judged (no held-out score)."""
    before = job.metrics.get("map50_before")
    if before is None or job.achieved_gain is None:
        return None
    return min(max(job.achieved_gain / max(1.0 - before, 1e-6), 0.0), 1.0)


def scene_yield(done: list[TrainingJob], edge_id: str, scene_start: float) -> tuple[float, int]:
    """(expected yield of the next job of edge_id's scene, how many of that scene's jobs it rests on).

    Shrinkage with one pseudo-job at each level: the fleet's mean yield, starting from one job at
    1 (the upper bound) so an empty record predicts all the room, is the prior for the scene,
    which counts as one job beside the scene's own judged jobs. A scene whose jobs keep winning
    nothing drifts down towards 0 by 1/(n + 1); one good job pulls it halfway back up.
    """
    judged = [(j, y) for j in done if (y := job_yield(j)) is not None]
    fleet = (sum(y for _, y in judged) + 1.0) / (len(judged) + 1)
    own = [y for j, y in judged if j.edge_id == edge_id and j.metrics.get("scene_start") == scene_start]
    return (sum(own) + fleet) / (len(own) + 1), len(own)


class TrainingManager:
    """Queues retraining jobs per edge from labelling progress, ranked by job_priority."""

    def __init__(
        self,
        store: StateStore,
        registry: ModelRegistry,
        cfg: ManagerConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.clock = clock  # the benchmark passes its virtual clock

    def on_labelled(self, samples: list[StoredSample], now: float | None = None) -> list[TrainingJob]:
        """Update accuracy proxies for the edges in this batch and queue jobs that are due."""
        now = self.clock() if now is None else now
        by_edge: dict[str, list[StoredSample]] = defaultdict(list)
        for s in samples:
            by_edge[s.edge_id].append(s)
        jobs = []
        for edge_id, batch in by_edge.items():
            self._update_live_accuracy(edge_id, batch)
            job = self.maybe_queue(edge_id, now)
            if job is not None:
                jobs.append(job)
        return jobs

    def _update_live_accuracy(self, edge_id: str, batch: list[StoredSample]) -> None:
        """Fold the batch's mAP50 into the proxy. Once an edge has sent audit frames (drawn at
        random, sampler.audit_share) only those count: the frames it chose on merit are the ones
        its student finds hard, and would rank an edge that is doing well as one with much to gain."""
        audit = [s for s in batch if s.audit]
        meta = self.store.get_meta(edge_id)
        if audit:
            batch = audit
            if not meta.get("audits"):
                self.store.set_meta(edge_id, audits=1.0)
        elif meta.get("audits"):
            return
        edge = self.store.get_edge(edge_id)
        preds = [detections_to_array(s.student) for s in batch]
        truth = [detections_to_array(s.labels or []) for s in batch]
        batch_map = map50(preds, truth, max(1, len(edge.class_names)))
        old = meta.get("live_map50")
        live = batch_map if old is None else (1 - LIVE_ACCURACY_EMA) * old + LIVE_ACCURACY_EMA * batch_map
        self.store.set_meta(edge_id, live_map50=live)
        data = {"batch_map50": batch_map, "live_map50": live, "samples": float(len(batch))}
        self.store.add_event(EdgeEvent(edge_id, "accuracy", self.clock(), data))

    def on_scene_change(self, change: SceneChange) -> None:
        """The edge's scene changed: its live accuracy on the new scene is unknown, so rank it as
        having everything to gain once labelled frames of the new scene are in (and until they
        say otherwise). Its queued job, if any, now waits for those frames (see maybe_queue)."""
        self.store.set_meta(change.edge_id, live_map50=0.0, scene_changed_at=change.time)
        self.maybe_queue(change.edge_id, self.clock())

    def _scene_backlog(
        self, edge_id: str, meta: dict[str, float], queued: bool
    ) -> tuple[int, int, float | None, float]:
        """(new labelled samples of the edge's current scene that no earlier job covered, that
        scene's labelled samples that earlier jobs covered, that scene's start if no earlier job
        has served it, that scene's start).

        The current scene starts at the edge's newest reported scene change (scene_changed_at,
        or each sample's scene_start: 0 before the first change); a sample from an earlier scene
        says nothing about what the camera sees now, so it does not count towards a job. For an
        edge with a job queued, "earlier" means before that job: the samples it will train on.
        The covered count is looked for only as far as the doubling follow-up and the rank by gain
        per frame need (ManagerConfig.follow_up, ManagerConfig.rank): twice a job's frames.
        """
        covered = int(meta.get("prior_queued_seq" if queued else "last_queued_seq", 0))
        served = meta.get("prior_served_scene" if queued else "served_scene", 0.0)
        limit = max(self.cfg.min_new_samples, self.cfg.min_scene_samples)
        if self.cfg.follow_up == "doubling" or self.cfg.rank == "gain_per_frame":
            limit *= 2
        recent = self.store.list_samples(edge_id, labelled=True, newest_first=True, limit=limit)
        scene = max(meta.get("scene_changed_at", 0.0), recent[0].scene_start if recent else 0.0)
        new = old = 0
        for s in recent:
            if s.scene_start < scene:
                break
            if s.seq > covered:
                new += 1
            else:
                old += 1
        unserved = scene > 0.0 and scene > served
        return new, old, scene if unserved else None, scene

    def _needed(self, new_scene: float | None, covered_in_scene: int) -> int:
        """How many new labelled samples of the current scene make a job due: a new scene's first
        job needs min_scene_samples; a follow-up min_new_samples, or with follow_up "doubling"
        as many as earlier jobs covered of the scene (within min_scene_samples..min_new_samples)."""
        if new_scene is not None:
            return self.cfg.min_scene_samples
        if self.cfg.follow_up == "doubling" and covered_in_scene:
            return min(self.cfg.min_new_samples, max(self.cfg.min_scene_samples, covered_in_scene))
        return self.cfg.min_new_samples

    def maybe_queue(self, edge_id: str, now: float) -> TrainingJob | None:
        """Queue a job for edge_id once enough new labelled samples of its current scene are
        waiting, or re-rank its queued job.

        A queued job ranks by its own samples: those since the job before it. When its edge's
        scene changes, it has none of the new scene, and it ranks last (priority 0) until it
        has as many as a new scene's first job needs: a worker that claimed it could not train
        it, and would leave ready jobs of other edges waiting. It then outranks them by the
        new scene's room, and may pre-empt a job of less value (training.preempt_ratio).
        """
        meta = self.store.get_meta(edge_id)
        if is_paused(meta):
            return None
        queued = self.store.queued_job_for(edge_id)
        new, covered_in_scene, new_scene, scene = self._scene_backlog(edge_id, meta, queued is not None)
        last_model = meta.get("last_model_time", meta.get("first_seen", now))
        needed = self._needed(new_scene, covered_in_scene)
        yield_share, judged = self.expected_yield(edge_id, scene)
        live = meta.get("live_map50", 0.0)
        priority = job_priority(live, now - last_model, new, self.cfg, needed, yield_share) if new >= needed else 0.0
        if self.cfg.rank == "gain_per_frame":  # Smith's rule: the most gain per unit of work first
            priority /= max(1, new + covered_in_scene)
        if queued is not None:  # re-rank it; a worker may have claimed it meanwhile, then nothing changes
            if queued.priority < OPERATOR_PRIORITY:
                self.store.reprioritize_job(queued.job_id, priority)
            return None
        if new < needed:
            return None
        if now - meta.get("last_job_time", 0.0) < self.cfg.min_interval_s:
            return None
        if any(j.status == "running" for j in self.store.list_jobs(edge_id=edge_id, status="running", limit=1)):
            return None
        reason = (
            f"{new} new labelled samples, live mAP50 {live:.2f}, "
            f"expected yield {yield_share:.2f} ({judged} judged jobs of this scene)"
        )
        if new_scene is not None:
            reason = f"new scene since t={new_scene:.1f}; " + reason
        return self._queue(edge_id, now, priority, reason, meta, gain=predicted_gain(live, yield_share))

    def expected_yield(self, edge_id: str, scene_start: float) -> tuple[float, int]:
        """scene_yield over the fleet's most recent finished jobs."""
        return scene_yield(self.store.list_jobs(status="done", limit=YIELD_HISTORY), edge_id, scene_start)

    def queue_now(self, edge_id: str, reason: str) -> TrainingJob:
        """Queue a job for edge_id at once, ahead of all others (an operator's request).

        An edge with a job already queued gets that job moved to the front instead.
        """
        now = self.clock()
        queued = self.store.queued_job_for(edge_id)
        if queued is not None and self.store.reprioritize_job(queued.job_id, OPERATOR_PRIORITY):
            queued.priority = OPERATOR_PRIORITY
            return queued
        meta = self.store.get_meta(edge_id)
        gain = predicted_gain(meta.get("live_map50", 0.0))  # the bound: an operator's job is not ranked by yield
        return self._queue(edge_id, now, OPERATOR_PRIORITY, reason, meta, gain=gain, suffix="-op")

    def _queue(
        self,
        edge_id: str,
        now: float,
        priority: float,
        reason: str,
        meta: dict[str, float],
        gain: float,
        suffix: str = "",
    ) -> TrainingJob:
        covered = int(meta.get("last_queued_seq", 0))
        newest = self.store.list_samples(edge_id, labelled=True, newest_first=True, limit=1)
        seq = newest[0].seq if newest else covered
        job = TrainingJob(
            job_id=f"{edge_id}-s{seq:07d}{suffix}",  # unique: each job of the manager needs new samples
            edge_id=edge_id,
            priority=priority,
            created=now,
            base_version=self.registry.latest_version(edge_id),
            reason=reason,
            predicted_gain=gain,
        )
        if suffix and any(j.job_id == job.job_id for j in self.store.list_jobs(edge_id=edge_id, limit=20)):
            job.job_id += f"-{int(now)}"
        self.store.put_job(job)
        # what the job covers, and what the jobs before it had: a queued job is ranked by its own samples
        marks = {"last_queued_seq": float(seq), "last_job_time": now, "prior_queued_seq": float(covered)}
        marks["prior_served_scene"] = meta.get("served_scene", 0.0)
        if newest:
            marks["served_scene"] = max(newest[0].scene_start, meta.get("scene_changed_at", 0.0))
        self.store.set_meta(edge_id, **marks)
        log.info("queued job %s (%s, priority %.3f)", job.job_id, job.reason, priority)
        return job
