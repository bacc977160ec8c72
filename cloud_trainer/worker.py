"""The training worker: claims a job, fine-tunes the edge's student, validates, registers.

A candidate is registered only if its mAP50 on held-out fresh teacher-labelled frames is not
worse than the current model's (within the configured tolerance), and, if the edge has reported
a scene change since the job's frames were taken, not worse than the edge's latest model on
the new scene's frames (a model for a scene that has gone is not sent). Training data is the
newest labelled samples (minus the held-out ones) plus a replay share of older samples,
against forgetting the scenes seen before.

Workers run in the cloud process (threads) or as `edgesync cloud worker` processes on any
number of machines sharing one Redis and one data directory. A claimed job is leased: a
heartbeat keeps the lease while training (cloud_trainer.lease), the weights are checkpointed
at every epoch (cloud_trainer.checkpoints), and a job whose worker dies is taken over by
another worker, which resumes it from the checkpoint. A model is registered only after a fence
confirms the claim is still this worker's, so each job registers at most one version.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cloud_trainer.checkpoints import Checkpoint, JobCheckpoints, JobPlan
from cloud_trainer.distill_training import TeacherFeatures
from cloud_trainer.lease import LeaseKeeper, LeaseLost
from cloud_trainer.manager import pinned_version
from cloud_trainer.metrics import JOB_DURATION
from cloud_trainer.profiler import LearningCurve, SettingProbe, choose_setting, profile_candidates, record_profile
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.replay_style import restyled_replay
from cloud_trainer.state import StateStore
from cloud_trainer.state.base import DEFAULT_LEASE_S, StoreUnavailable, job_rank
from cloud_trainer.training import FineTuneResult, LabelledFrame, evaluate, fine_tune, ground_truth, predictions
from edgesync.config import CloudConfig, TrainingConfig
from edgesync.delta import PreparedUpdate, prepare
from edgesync.evaluation import (
    MatchedFrame,
    best_of_cross_validated,
    match_frames,
    paired_bootstrap_win_rate,
    pooled_map50,
)
from edgesync.student import StudentModel
from edgesync.teachers import Teacher, build_teacher
from edgesync.types import ModelManifest, StoredSample, TrainingJob, model_key
from edgesync.weights import sha256_hex

log = logging.getLogger(__name__)


class StopEarly(Exception):
    """The profiler ends training: held-out accuracy stopped improving (the message says how)."""


class SceneLeft(StopEarly):
    """Training stops: the edge reported a scene change after the scene the job's frames show."""

    def __init__(self, scene: float, changed_at: float, for_job: TrainingJob | None = None) -> None:
        goes_to = (
            f"job {for_job.job_id} of {for_job.edge_id} can have the worker"
            if for_job is not None
            else "what is left of its budget goes to the new scene's job"
        )
        super().__init__(
            f"the edge's scene changed at t={changed_at:.1f}, after the scene (from t={scene:.1f}) "
            f"this job trains for; {goes_to}"
        )
        self.changed_at = changed_at


class Preempted(Exception):
    """A job yields the worker at an epoch boundary to a much more valuable queued job."""

    def __init__(self, job: TrainingJob, by: TrainingJob, epochs_done: int, why: str = "") -> None:
        why = why or f"priority {by.priority:.3g} against {job.priority:.3g}"
        super().__init__(
            f"job {job.job_id} pre-empted after epoch {epochs_done} by job {by.job_id} of {by.edge_id} "
            f"({why}); it resumes from its checkpoint"
        )
        self.by = by


class Refreshing(Preempted):
    """A job yields the worker at an epoch boundary to resume on the frames its scene gained since
    it selected its own (training.refresh)."""

    def __init__(self, job: TrainingJob, epochs_done: int, had: int, now: int) -> None:
        Exception.__init__(
            self,
            f"job {job.job_id} yields after epoch {epochs_done}: its scene has {now} labelled frames, it "
            f"trains and is judged on {had}; it resumes from its checkpoint on all of them",
        )
        self.by = job


class Delivered(StopEarly):
    """A pre-empted job whose best epoch so far beats the edge's model stops to be judged and sent
    (training.preempt_delivers) rather than wait in the queue to resume."""

    def __init__(self, by: TrainingJob, epochs_done: int, best: float, before: float) -> None:
        super().__init__(
            f"pre-empted after epoch {epochs_done} by job {by.job_id} of {by.edge_id}; its best epoch so far "
            f"scores {best:.3f} held-out against the edge model's {before:.3f}: judged and sent as it is"
        )


def default_worker_id() -> str:
    """A worker id unique across machines and processes: host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


# a job's samples: (fresh training samples, held-out samples, replay samples)
Selection = tuple[list[StoredSample], list[StoredSample], list[StoredSample]]


def split_fresh(fresh: list[StoredSample], cfg: TrainingConfig) -> tuple[list[StoredSample], list[StoredSample]]:
    """Split fresh samples into training and held-out ones.

    Audit frames (frames the edge drew at random, sampler.audit_share) never train: the frames
    the edge chose on merit are the ones its student finds hard, and a model judged on them can
    gain there and lose on what the camera mostly sees. With at least min_heldout audit frames
    they are the held-out set and the rest train. With fewer, they are held out and the
    configured split of the other frames (below) makes up the rest of the held-out share. An
    audit frame is held out by every job of its scene, so no model of the scene has trained on
    the frames that judge it and the next job's candidate: a model fitted to a few dozen
    frames scores its own training frames far above what it does on the stream. Without audit
    frames (or with nothing else) the configured split applies to all of them.

    "interleaved" (the default) spreads the held-out share evenly through the window, so both sets
    span the same scenes. "newest" holds out the most recent arrivals, so a candidate must beat the
    current model on what the camera sees now; with a few dozen samples per job that set is small
    and noisy, and it did worse on the dev benchmark (BENCHMARKS.md).

    Both draw the split afresh for every job, so a frame one job trained on can judge the next
    job of the same scene, where the model it trained (now the current one) has seen it.
    "fixed" never does that: every heldout_fraction-th frame by arrival number is held out for
    good, and while a scene has too few of those for min_heldout, its newest frames make up the
    rest (frames no job has trained on yet, unless jobs follow each other faster than frames
    arrive). A scene's held-out set then grows with the scene instead of being redrawn.
    """
    fresh = sorted(fresh, key=lambda s: s.seq)
    audit = [s for s in fresh if s.audit]
    others = [s for s in fresh if not s.audit]
    n_held = min(len(fresh) - 1, max(cfg.min_heldout, round(len(fresh) * cfg.heldout_fraction)))
    if not audit or not others:
        return _configured_split(fresh, cfg, n_held)
    if len(audit) >= cfg.min_heldout or n_held <= len(audit):
        return others, audit
    train, extra = _configured_split(others, cfg, n_held - len(audit))
    return train, sorted(audit + extra, key=lambda s: s.seq)


def _configured_split(
    fresh: list[StoredSample], cfg: TrainingConfig, n_held: int
) -> tuple[list[StoredSample], list[StoredSample]]:
    """(train, held) of fresh (in arrival order) by training.heldout, holding out n_held of them
    ("fixed": its periodic frames, topped up with the newest to min_heldout or n_held if fewer;
    see split_fresh)."""
    n_held = min(n_held, len(fresh) - 1)
    if n_held <= 0:
        return fresh, []
    if cfg.heldout == "newest":
        return fresh[:-n_held], fresh[-n_held:]
    if cfg.heldout == "fixed":
        period = max(2, round(1 / cfg.heldout_fraction))
        held_ids = {s.sample_id for s in fresh if s.seq % period == period // 2}
        for s in reversed(fresh):  # the newest make up a scene's first few
            if len(held_ids) >= min(n_held, cfg.min_heldout):
                break
            held_ids.add(s.sample_id)
        if len(held_ids) == len(fresh):  # keep one to train on
            held_ids.discard(fresh[0].sample_id)
        return [s for s in fresh if s.sample_id not in held_ids], [s for s in fresh if s.sample_id in held_ids]
    step = len(fresh) / n_held
    held_idx = {min(len(fresh) - 1, int(i * step + step / 2)) for i in range(n_held)}
    train = [s for i, s in enumerate(fresh) if i not in held_idx]
    held = [s for i, s in enumerate(fresh) if i in held_idx]
    return train, held


class TrainingWorker:
    """Runs training jobs from the store's queue, one at a time."""

    def __init__(
        self,
        store: StateStore,
        registry: ModelRegistry,
        cfg: TrainingConfig,
        worker_id: str,
        workdir: Path | None = None,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
        checkpoints: JobCheckpoints | None = None,
        teacher: Teacher | None = None,
        at_boundary: Callable[[TrainingJob, int], None] | None = None,
        admits: Callable[[TrainingJob, Selection], bool] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.worker_id = worker_id
        self.workdir = workdir
        self.clock = clock  # the benchmark passes its virtual clock
        self.lease_s = lease_s
        self.checkpoints = checkpoints  # None: a job taken over restarts from scratch
        # the feature source of training.distill (the labelling teacher); unused while it is off
        self.teacher = teacher
        # called with (job, epochs done in this claim) at each epoch boundary before the last, before
        # the edge's scene and the queue are looked at: the benchmark's simulation
        # (edgesync_bench.lockstep) holds the job there until its virtual clock reaches the
        # boundary. None in a deployment
        self.at_boundary = at_boundary
        # whether a queued job, with the samples select() drew for it, could start now; None: any job
        # with enough frames can. A job that could not does not pre-empt (the benchmark passes its
        # training budget's check)
        self.admits = admits
        if cfg.distill.mode != "off" and teacher is None:
            raise ValueError(f"training.distill.mode is {cfg.distill.mode!r}: the worker needs a teacher")

    @classmethod
    def from_config(
        cls,
        cfg: CloudConfig,
        store: StateStore,
        registry: ModelRegistry,
        worker_id: str,
        teacher: Teacher | None = None,
    ) -> TrainingWorker:
        """A worker as a deployment runs it: the config's lease, checkpoints beside the registry.

        With training.distill on, the worker needs the teacher's features: the given teacher (the
        cloud process shares its labelling teacher), else one built from the config's.
        """
        checkpoints = JobCheckpoints(Path(cfg.data_dir) / "checkpoints")
        if cfg.training.distill.mode != "off" and teacher is None:
            teacher = build_teacher(cfg.teacher)
        return cls(
            store, registry, cfg.training, worker_id, lease_s=cfg.lease_s, checkpoints=checkpoints, teacher=teacher
        )

    # ------------------------------------------------------------ data

    def _frames(self, samples: list[StoredSample]) -> list[LabelledFrame]:
        frames = []
        for s in samples:
            jpeg = self.store.get_jpeg(s.edge_id, s.sample_id)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                frames.append(LabelledFrame(image, list(s.labels or []), f"{s.seq:08d}"))
        return frames

    def select(self, job: TrainingJob) -> Selection:
        """(fresh training samples, held-out samples, replay samples) for a job.

        Fresh samples are the newest ones of the edge's current scene (those sharing the newest
        sample's scene_start): frames from before the last scene change show a scene that is
        gone, so they neither train the new model as fresh data nor judge it. They stay
        available as replay against forgetting.
        """
        fresh = self.store.list_samples(job.edge_id, labelled=True, newest_first=True, limit=self.cfg.max_fresh)
        scene = self.current_scene(job.edge_id, fresh)
        fresh = [s for s in fresh if s.scene_start == scene]
        train, held = split_fresh(fresh, self.cfg)
        fresh_ids = {s.sample_id for s in fresh}
        n_replay = round(len(train) * self.cfg.replay_fraction)
        older = [
            s for s in self.store.list_samples(job.edge_id, labelled=True, limit=None) if s.sample_id not in fresh_ids
        ]
        replay = random.Random(self._seed_key(job)).sample(older, min(n_replay, len(older)))
        return train, held, replay

    def _seed_key(self, job: TrainingJob) -> str:
        """What seeds a job's random draws: its id, and the training seed unless that is 0 (so seed
        0 keeps the draws every earlier result was measured with)."""
        return f"{self.cfg.seed}/{job.job_id}" if self.cfg.seed else job.job_id

    def current_scene(self, edge_id: str, newest: list[StoredSample]) -> float:
        """Start of the edge's current scene: the newest reported scene change, else the newest sample's."""
        reported = self.store.get_meta(edge_id).get("scene_changed_at", 0.0)
        return max(reported, newest[0].scene_start if newest else 0.0)

    def ready(self, train: list[StoredSample], held: list[StoredSample]) -> bool:
        """Whether a job has enough frames of the current scene to train and judge a model; with
        training.audit_jury, of an edge that sends audit frames, min_heldout of them to judge on."""
        if len(train) + len(held) < self.cfg.min_fresh or not held:
            return False
        if self.cfg.audit_jury and self.store.get_meta(held[0].edge_id).get("audits"):
            return sum(s.audit for s in held) >= self.cfg.min_heldout
        return True

    # ------------------------------------------------------------ one job

    def run_job(
        self, job: TrainingJob, max_epochs: int | None = None, keeper: LeaseKeeper | None = None
    ) -> TrainingJob:
        """Train (or resume), validate and (if not worse) register; returns the finished job.

        max_epochs caps the configured epochs (a training budget running out); for a resumed job,
        the epochs still to run. keeper holds the job's lease while it trains; without one the
        lease is only checked before registering.
        Raises LeaseLost, having registered nothing, if another worker has taken the job over.
        """
        keeper = keeper or LeaseKeeper(self.store, job, self.lease_s)
        started = time.monotonic()
        if self._already_registered(job):
            return job
        base_version = self.registry.latest_version(job.edge_id)
        resume = self._checkpoint(job, base_version)
        train, held, replay = self._samples(job, resume.plan) if resume is not None else self.select(job)
        added = 0  # frames its scene gained since the job selected its own (training.refresh)
        if resume is not None and self.cfg.refresh and train:
            train, held, replay, added = self._refreshed(job, (train, held, replay))
        if resume is not None and not self.ready(train, held):  # its samples were trimmed meanwhile
            resume, added = None, 0
            train, held, replay = self.select(job)
        if not self.ready(train, held):
            job.status, job.error = "queued", f"waiting for {self.cfg.min_fresh} labelled frames of the current scene"
            return job
        base_manifest, data = self.registry.load(job.edge_id, base_version)
        current = StudentModel.from_bytes(base_manifest, data, source=f"{job.edge_id} v{base_manifest.version}")
        held_frames = self._frames(held)
        fresh_frames = self._frames(train)
        train_frames = fresh_frames + restyled_replay(self._frames(replay), fresh_frames, self.cfg.replay_style)
        if not any(f.labels for f in held_frames):  # an empty ground truth cannot tell two models apart
            job.status, job.error = "done", "held-out frames have no teacher boxes: cannot validate; not trained"
            job.metrics = {"train_samples": float(len(train)), "heldout_samples": float(len(held))}
            log.warning("job %s: %s", job.job_id, job.error)
            return job
        epochs = min(self.cfg.epochs, max_epochs or self.cfg.epochs)
        plan = resume.plan if resume is not None else JobPlan(base_version, epochs, *self._ids(train, held, replay))
        if added:
            plan.train, plan.held, plan.replay = self._ids(train, held, replay)
            plan.score = None  # scored on the frames that judged it before (training.backtrack scores it afresh)
        if resume is not None and max_epochs is not None:  # a budget caps what is left, not the whole plan
            plan.epochs_total = min(plan.epochs_total, plan.epochs_done + max_epochs)
        start = current if resume is None else self._model_from(resume, base_manifest)
        resumed_from = plan.epochs_done
        before = evaluate(current, held_frames)
        preprocess_scores: dict[str, float] = {}
        view_bootstraps = 0
        if resume is None:  # how the model will see frames, before any training in that view
            start, preprocess_scores, view_bootstraps = self._preprocessing(job, start, held_frames, before)
            plan.preprocess = start.preprocess
        probes: list[SettingProbe] = []
        if resume is None and len(self.cfg.candidates) > 1:  # which setting, before committing the budget
            probes = self._profile(job, start, train_frames, held_frames, before, plan.epochs_total, keeper)
            chosen = choose_setting(probes)
            plan.setting, plan.epochs_total = chosen.setting.name, chosen.planned_epochs
        cfg = self._setting(plan.setting)
        curve = LearningCurve(before, plan.epochs_total - plan.epochs_done, cfg.patience)
        best_so_far = None  # a resumed job's best epoch of its earlier claims, or a new one's epoch 0
        if resume is None and cfg.keep == "best" and cfg.start_competes and start.preprocess != current.preprocess:
            # the view change alone, untrained, as epoch 0 (fine_tune trains a copy of start)
            best_so_far = {"epochs": 0, "state": start.state_dict(), "score": preprocess_scores[start.preprocess]}
            plan.best_epoch, plan.best_score = 0, best_so_far["score"]
        if resume is not None and resume.best_state is not None and plan.best_score is not None:
            if added:  # its best epoch so far, scored on the held-out frames as they are now
                plan.best_score = evaluate(self._model(resume.best_state, start), held_frames)
            best_so_far = {"epochs": plan.best_epoch, "state": resume.best_state, "score": plan.best_score}
        scene = train[0].scene_start if train else 0.0  # the scene (edge clock) the job trains for
        result = self._train(job, start, train_frames, held_frames, plan, keeper, curve, cfg, best_so_far, scene)
        trained = evaluate(result.model, held_frames)
        kept, kept_score, recalibration = result.model, trained, {}
        if cfg.interpolate < 1:  # WiSE-FT: part of the way from the current model (the candidate's validation)
            kept = current.with_preprocess(kept.preprocess).interpolated(kept, cfg.interpolate)  # in the job's view
            kept_score = evaluate(kept, held_frames)
        if cfg.recalibrate_bn and fresh_frames:
            kept, kept_score, recalibration = self._recalibrate(job, kept, kept_score, fresh_frames, held_frames)
        candidate, update = self._as_delivered(kept, base_manifest, data)
        # the candidate's held-out score, less what picking its epoch on those frames adds to it
        after = (evaluate(candidate, held_frames) if update.lossy else kept_score) - result.selection_optimism
        job.metrics = {
            "map50_before": before,
            "map50_after": after,  # of the model the edge will rebuild, which is what gets registered
            "map50_trained": trained,  # of the fine-tuned weights as they are (before interpolate, recalibrate_bn)
            "gain": after - before,
            "train_samples": float(len(train)),
            "replay_samples": float(len(replay)),
            "heldout_samples": float(len(held)),
            "heldout_audit": float(bool(held) and all(s.audit for s in held)),  # drawn at random by the edge
            "epochs": float(plan.epochs_done),  # in all, over every claim of the job
            "image_epochs": float(result.image_epochs),  # the work of this claim
            "resumed_from_epoch": float(resumed_from),
            "heldout_evaluations": float(len(curve.points)),  # one per epoch, for the profiler
            "train_seconds": time.monotonic() - started,
            # the scene (edge clock) it trained for: the manager predicts that scene's next gain from it
            "scene_start": scene,
        }
        job.metrics |= {f"map50_epoch_{i + 1 + resumed_from}": v for i, v in enumerate(curve.points)}
        if added:  # training.refresh: this claim took in its scene's newer frames
            job.metrics["refresh_added"] = float(added)
            job.metrics["refresh_evaluations"] = float(best_so_far is not None)  # its best epoch, rescored
        if len(preprocess_scores) > 1:  # the starting model scored as each preprocessing would have it
            job.metrics |= {f"map50_start_{mode}": score for mode, score in preprocess_scores.items()}
            # each view but the model's own, and both views of each paired bootstrap once more
            job.metrics["preprocess_evaluations"] = float(len(preprocess_scores) - 1 + 2 * view_bootstraps)
            job.metrics["preprocess_changed"] = float(start.preprocess != current.preprocess)
        job.metrics |= recalibration
        if result.kept_epoch is not None:  # training.keep: best
            job.metrics["kept_epoch"] = float(result.kept_epoch)
        if cfg.judge == "cross-validated":
            job.metrics["selection_optimism"] = result.selection_optimism
        if result.scene_left_at is not None:  # training.stop_on_scene_change ended it early
            job.metrics["scene_left_at"] = result.scene_left_at
        if result.delivered_on_preemption:  # training.preempt_delivers ended it early
            job.metrics["delivered_on_preemption"] = 1.0
        if result.bn_shift_images:  # training.bn_follows_steps' extra forward passes
            job.metrics["bn_shift_images"] = float(result.bn_shift_images)
        if result.teacher_images:  # distillation's extra work (training.distill)
            job.metrics["distill_teacher_images"] = float(result.teacher_images)
            job.metrics["distill_teacher_seconds"] = result.teacher_seconds
        if probes:  # the chosen candidate's prediction, made before the job committed its budget
            record_profile(job, probes, plan.setting)
        elif curve.first_prediction is not None:  # the profiler's, which replaces the manager's
            if job.predicted_gain is not None:
                job.metrics["queued_gain"] = job.predicted_gain
            job.predicted_gain = curve.first_prediction
        job.achieved_gain = after - before
        later = self._later_frames(job, train + held, scene) if self.cfg.later_jury else []
        if len(later) >= self.cfg.min_heldout and any(f.labels for f in later):
            accepted = self._accepts_later(job, current, candidate, later, before, after)
        else:
            accepted = self._accepts(job, current, candidate, held_frames, before, after)
        chosen, score = (candidate, after) if accepted else (None, before)
        if chosen is candidate and base_manifest.model_key == model_key(
            sha256_hex(update.weights), candidate.preprocess
        ):
            # the kept weights are the edge's own: with a few dozen frames an epoch is one or two
            # batches, and the first optimizer step comes only after ultralytics' nominal batch, so
            # keep: best keeps epoch 1 when every step made things worse. Not an update
            job.error = (
                f"the kept weights are v{base_manifest.version}'s own (no optimizer step helped): nothing to send"
            )
            chosen = None
        if self.cfg.fallback_to_first and base_manifest.version > 1:
            # RECL-style reuse, smallest form: the scene may have returned to what the first model knew
            # in the view training.preprocess picks for it, as for a job's starting model: a scene
            # that auto levels win back may be one the first model knew once levelled, and then no
            # fine-tune of a later model should go below it
            first = self._load_model(job.edge_id, 1)
            first, first_scores, bootstraps = self._preprocessing(job, first, held_frames, evaluate(first, held_frames))
            first_score = first_scores[first.preprocess]
            job.metrics["map50_first"] = first_score
            job.metrics["first_evaluations"] = float(len(first_scores) + 2 * bootstraps)
            if len(first_scores) > 1:
                job.metrics |= {f"map50_first_{mode}": s for mode, s in first_scores.items()}
            if first_score > max(before, score):
                chosen, score = first, first_score
        chosen_for = scene  # the scene (edge clock) it was chosen for
        moved_on = self.current_scene(job.edge_id, [])
        if chosen is not None and moved_on > chosen_for:
            chosen, score, chosen_for = self._judge_in_new_scene(job, chosen, score, base_manifest.version, moved_on)
        pinned = pinned_version(self.store.get_meta(job.edge_id))
        if chosen is not None and pinned:
            job.error = f"edge pinned to v{pinned} by an operator: the model was not registered"
            chosen = None
        if chosen is not None:
            payload = update.weights if chosen is candidate else chosen.encode()[0]
            deltas = [update.payload] if chosen is candidate and update.payload is not None else []
            manifest = chosen.manifest(
                payload,
                parent=base_manifest.version,
                # the scene (edge clock) it was chosen for: the edge stops treating it as novel
                metrics={"map50": score, "parent_map50": before, "scene_start": chosen_for},
                trained_until=max((s.received_time for s in train), default=self.clock()),
            )
            keeper.fence()  # the last moment to find the job taken over: after this a version exists
            stored = self.registry.register(job.edge_id, payload, manifest, payloads=deltas)
            job.result_version = stored.version
            if self.checkpoints is not None:  # before the job says done: a successor must not register again
                self.checkpoints.record_result(job.job_id, stored.version, job.metrics)
            self.store.set_meta(job.edge_id, last_model_time=self.clock())
        job.status = "done"
        log_outcome(job, before, score, chose_first=chosen is not None and chosen is not candidate)
        return job

    def _accepts(
        self,
        job: TrainingJob,
        current: StudentModel,
        candidate: StudentModel,
        held: list[LabelledFrame],
        before: float,
        after: float,
    ) -> bool:
        """Whether the held-out frames speak for the candidate: not worse than the current model
        (within training.tolerance) and, with training.accept_confidence, better on at least that
        share of paired bootstrap resamples of the frames (the win rate goes into the job's metrics;
        scoring both models once more for it is one held-out validation more than the two a job has)."""
        if after + self.cfg.tolerance < before:
            return False
        if not self.cfg.accept_confidence:
            return True
        win_rate = self._win_rate(job, candidate, current, held)
        job.metrics["win_rate"] = win_rate
        if win_rate >= self.cfg.accept_confidence:
            return True
        job.error = (
            f"held-out mAP50 {before:.3f} -> {after:.3f}, but it wins on {win_rate:.0%} of paired bootstrap "
            f"resamples of its {len(held)} held-out frames, {self.cfg.accept_confidence:.0%} needed: not registered"
        )
        return False

    def _later_frames(self, job: TrainingJob, selected: list[StoredSample], scene: float) -> list[LabelledFrame]:
        """Labelled frames of the job's scene (from `scene`, edge clock) that arrived after the newest
        frame it selected (training.later_jury), up to max_fresh of the newest."""
        last = max(s.seq for s in selected)
        return self._frames([s for s in reversed(self._scene_samples(job.edge_id, scene)) if s.seq > last])

    def _accepts_later(
        self,
        job: TrainingJob,
        current: StudentModel,
        candidate: StudentModel,
        later: list[LabelledFrame],
        before: float,
        after: float,
    ) -> bool:
        """Whether the frames that arrived after the job's window speak for the candidate: not worse
        than the current model on them, within training.tolerance (training.later_jury)."""
        current_score, candidate_score = evaluate(current, later), evaluate(candidate, later)
        job.metrics |= {
            "later_frames": float(len(later)),  # scored by two models
            "map50_later_before": current_score,
            "map50_later_after": candidate_score,
        }
        if candidate_score + self.cfg.tolerance >= current_score:
            return True
        job.error = (
            f"held-out mAP50 {before:.3f} -> {after:.3f}, but on the {len(later)} frames of its scene that "
            f"arrived after its own {current_score:.3f} -> {candidate_score:.3f}: not registered"
        )
        return False

    @staticmethod
    def _matches(model: StudentModel, frames: list[LabelledFrame]) -> list[MatchedFrame]:
        """model's predictions on frames matched against their labels, for mAP50 and its resamples."""
        return match_frames(predictions(model, frames), ground_truth(frames), len(model.class_names))

    def _judge_in_new_scene(
        self, job: TrainingJob, chosen: StudentModel, score: float, base_version: int, scene: float
    ) -> tuple[StudentModel | None, float, float]:
        """A model for a scene the edge has left, judged on the scene it is in now (starting at
        scene); returns (the model to register or None, its score, the scene it is chosen for).

        The edge reported a scene change while the job queued or trained: the model was trained
        and validated on a scene that is gone (a night model arriving after dawn), and the zoo
        may already have sent one for the new scene. With min_heldout labelled frames of the new
        scene it is registered only if it is not worse than the edge's latest model on them, and
        is then chosen for the new scene. With fewer there is nothing to judge it on: it is sent
        if no model has been registered since the one it beat on its own scene (the newest
        evidence is for it), but not over the zoo's pick for the new scene (or another worker's
        model) registered meanwhile; sent, it stays chosen for the scene it trained on.
        """
        frames = self._frames(self._scene_samples(job.edge_id, scene))
        latest_version = self.registry.latest_version(job.edge_id)
        if len(frames) < self.cfg.min_heldout or not any(f.labels for f in frames):
            job.metrics["new_scene_frames_unjudged"] = float(len(frames))
            if latest_version == base_version:
                return chosen, score, job.metrics["scene_start"]
            job.error = (
                f"the edge left the scene before the model was ready (scene change at {scene:.1f}); "
                f"{len(frames)} labelled frames of the new scene, too few to judge it on, and "
                f"v{latest_version} was registered since v{base_version}: not registered"
            )
            return None, job.metrics["map50_before"], scene
        current, candidate = evaluate(self._load_model(job.edge_id, latest_version), frames), evaluate(chosen, frames)
        job.metrics |= {
            "new_scene_frames": float(len(frames)),  # scored by two models
            "map50_new_scene": candidate,
            "map50_new_scene_latest": current,
        }
        if candidate + self.cfg.tolerance >= current:
            return chosen, candidate, scene
        job.error = (
            f"the edge left the scene before the model was ready (scene change at {scene:.1f}); on "
            f"{len(frames)} frames of the new scene it scores {candidate:.3f} against v{latest_version}'s "
            f"{current:.3f}: not registered"
        )
        return None, current, scene

    def _load_model(self, edge_id: str, version: int) -> StudentModel:
        """A registered version of the edge's student, ready to score."""
        manifest, data = self.registry.load(edge_id, version)
        return StudentModel.from_bytes(manifest, data, source=f"{edge_id} v{version}")

    @staticmethod
    def _recalibrate(
        job: TrainingJob, model: StudentModel, score: float, fresh: list[LabelledFrame], held: list[LabelledFrame]
    ) -> tuple[StudentModel, float, dict[str, float]]:
        """(model, its held-out score, metrics): the trained model or, where the held-out frames score
        it higher, the same model with batch-norm statistics re-estimated on the fresh frames
        (training.recalibrate_bn)."""
        recalibrated = model.recalibrated([f.image for f in fresh])
        recalibrated_score = evaluate(recalibrated, held)
        metrics = {"recalibration_frames": float(len(fresh)), "map50_recalibrated": recalibrated_score}
        if recalibrated_score > score:
            log.info("job %s: keeps batch-norm statistics of the new scene, held-out mAP50 %.3f -> %.3f",
                     job.job_id, score, recalibrated_score)  # fmt: skip
            return recalibrated, recalibrated_score, metrics | {"recalibrated": 1.0}
        return model, score, metrics | {"recalibrated": 0.0}

    # ------------------------------------------------------------ which setting

    def _setting(self, name: str) -> TrainingConfig:
        """The training config with the named candidate applied ("" or unknown: the config as is)."""
        for setting in self.cfg.candidates:
            if setting.name == name:
                return self.cfg.with_setting(setting)
        if name:
            log.warning("training candidate %r is no longer configured; training with the defaults", name)
        return self.cfg

    def _profile(
        self,
        job: TrainingJob,
        start: StudentModel,
        train: list[LabelledFrame],
        held: list[LabelledFrame],
        before: float,
        planned_epochs: int,
        keeper: LeaseKeeper,
    ) -> list[SettingProbe]:
        """The candidates' probes (cloud_trainer.profiler), each a short fine-tune of `start` scored
        on the held-out frames after every epoch."""

        def run_probe(cfg: TrainingConfig, frames: list[LabelledFrame], epochs: int) -> list[float]:
            points: list[float] = []

            def on_weights(epochs_done: int, state: dict) -> None:
                keeper.check()
                if epochs_done > len(points):  # ultralytics reports the last epoch twice
                    points.append(evaluate(self._model(state, start), held))

            workdir = Path(tempfile.mkdtemp(prefix=f"probe-{job.job_id}-", dir=self.workdir))
            try:
                fine_tune(start, frames, held, cfg, workdir, epochs=epochs, seed=self.cfg.seed, on_weights=on_weights)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            return points

        return profile_candidates(self.cfg, train, before, planned_epochs, run_probe, key=self._seed_key(job))

    # ------------------------------------------------------------ resuming

    def _already_registered(self, job: TrainingJob) -> bool:
        """True (job marked done) if an earlier claim registered the job's model and died before saying so."""
        found = self.checkpoints.result(job.job_id) if self.checkpoints is not None else None
        if found is None:
            return False
        job.result_version, job.metrics = found
        job.achieved_gain = job.metrics.get("gain")
        job.status = "done"
        log.info("job %s: v%d was registered by an earlier claim; finishing it", job.job_id, job.result_version)
        return True

    def _checkpoint(self, job: TrainingJob, base_version: int) -> Checkpoint | None:
        """The job's checkpoint if it can be resumed: it started from the edge's current model."""
        found = self.checkpoints.load(job.job_id) if self.checkpoints is not None else None
        if found is None:
            return None
        if found.plan.base_version != base_version:
            log.info("job %s: checkpoint trained from v%d, edge now at v%d; starting over",
                     job.job_id, found.plan.base_version, base_version)  # fmt: skip
            return None
        log.info("job %s: resuming after epoch %d of %d", job.job_id, found.plan.epochs_done, found.plan.epochs_total)
        return found

    def _samples(self, job: TrainingJob, plan: JobPlan) -> Selection:
        """The samples a checkpoint's plan names, in its order (any trimmed since are gone)."""
        stored = {s.sample_id: s for s in self.store.list_samples(job.edge_id, labelled=True)}

        def pick(ids: list[str]) -> list[StoredSample]:
            return [stored[i] for i in ids if i in stored]

        return pick(plan.train), pick(plan.held), pick(plan.replay)

    def _refreshed(
        self, job: TrainingJob, selection: Selection
    ) -> tuple[list[StoredSample], list[StoredSample], list[StoredSample], int]:
        """A resumed job's samples with the labelled frames its scene gained since it selected them
        (training.refresh), and how many those are. They are split as split_fresh splits a job's
        fresh frames and join the job's own: a frame it trained on never judges it, one that judged
        it never trains it. Replay is topped up to replay_fraction of the training frames."""
        train, held, replay = selection
        scene = train[0].scene_start
        had = {s.sample_id for s in (*train, *held, *replay)}
        new = [s for s in self._scene_samples(job.edge_id, scene) if s.sample_id not in had]
        if not new:
            return train, held, replay, 0
        more_train, more_held = split_fresh(new, self.cfg)
        train, held = train + more_train, sorted(held + more_held, key=lambda s: s.seq)
        n_replay = round(len(train) * self.cfg.replay_fraction) - len(replay)
        if n_replay > 0:
            taken = had | {s.sample_id for s in new}
            older = [
                s
                for s in self.store.list_samples(job.edge_id, labelled=True, limit=None)
                if s.sample_id not in taken and s.scene_start != scene
            ]
            rng = random.Random(f"{self._seed_key(job)}/refresh/{len(train)}")
            replay = replay + rng.sample(older, min(n_replay, len(older)))
        log.info("job %s: %d frames its scene gained join it (%d train, %d held out)",
                 job.job_id, len(new), len(more_train), len(more_held))  # fmt: skip
        return train, held, replay, len(new)

    def _scene_samples(self, edge_id: str, scene: float) -> list[StoredSample]:
        """Labelled samples of the edge's scene that started at `scene` (edge clock), newest first,
        among its newest max_fresh."""
        newest = self.store.list_samples(edge_id, labelled=True, newest_first=True, limit=self.cfg.max_fresh)
        return [s for s in newest if s.scene_start == scene]

    @staticmethod
    def _ids(*groups: list[StoredSample]) -> list[list[str]]:
        return [[s.sample_id for s in group] for group in groups]

    @staticmethod
    def _model_from(checkpoint: Checkpoint, base: ModelManifest) -> StudentModel:
        return StudentModel.from_state(
            checkpoint.state, list(base.class_names), base.imgsz, base.arch, preprocess=checkpoint.plan.preprocess
        )

    def _preprocessing(
        self, job: TrainingJob, start: StudentModel, held: list[LabelledFrame], score: float
    ) -> tuple[StudentModel, dict[str, float], int]:
        """start seeing frames in the view training.preprocess prefers (its first; start's own,
        if unlisted, comes last), unless a later view scores higher on the held-out frames on at
        least training.view_confidence of their paired bootstrap resamples; the held-out score of
        each view, and how many bootstraps that took. score is start's own.

        A job then trains the model in that view: auto levels win back much of a dark, hazy or
        colour-cast scene before any training (edgesync.preprocess) and cost a clean one little,
        and a model seeing frames levelled keeps that when the light changes next. A lead of a
        ten-thousandth on seven held-out frames of a clean scene is no reason to give that up. The
        first model, weighed against the candidate (training.fallback_to_first), is chosen so too.
        """
        views = {view: start if view == start.preprocess else start.with_preprocess(view)
                 for view in dict.fromkeys([*self.cfg.preprocess, start.preprocess])}  # fmt: skip
        scores = {view: score if model is start else evaluate(model, held) for view, model in views.items()}
        chosen, bootstraps = next(iter(views)), 0
        for view in list(views)[1:]:
            if scores[view] <= scores[chosen]:
                continue
            bootstraps += 1
            if self._win_rate(job, views[view], views[chosen], held) >= self.cfg.view_confidence:
                chosen = view
        return views[chosen], scores, bootstraps

    def _win_rate(self, job: TrainingJob, model: StudentModel, other: StudentModel, held: list[LabelledFrame]) -> float:
        """Share of paired bootstrap resamples of the held-out frames on which model outscores other."""
        return paired_bootstrap_win_rate(
            self._matches(model, held),
            self._matches(other, held),
            len(model.class_names),
            self.cfg.bootstrap_resamples,
            np.random.default_rng(zlib.crc32(self._seed_key(job).encode())),
        )

    def _train(
        self,
        job: TrainingJob,
        start: StudentModel,
        train: list[LabelledFrame],
        held: list[LabelledFrame],
        plan: JobPlan,
        keeper: LeaseKeeper,
        curve: LearningCurve,
        cfg: TrainingConfig,
        best_so_far: dict | None = None,
        scene: float = 0.0,
    ) -> FineTuneResult:
        """Fine-tune start for the plan's remaining epochs, checkpointing and scoring each one.

        The profiler (curve) may end training early. The result is the last epoch's weights, or
        with cfg.keep "best" the best-scoring epoch's of the whole job: best_so_far is a resumed
        job's best of its earlier claims ({"epochs", "state", "score"}), which the checkpoint
        keeps, or with cfg.start_competes a new job's untrained start in its new view (epoch 0).
        A resumed claim's learning rate goes on from where the job's schedule had got to.
        With cfg.backtrack an epoch that scores below the weights it started from is undone, and
        "last" means the last epoch kept. With cfg.judge "cross-validated" the result also says how
        much the kept epoch's held-out score owes to having been picked on those frames.
        With cfg.stop_on_scene_change training stops at the first epoch boundary after the edge
        reports a scene change past `scene`, the scene (edge clock) its fresh frames show; with
        pre-emption on (checkpoints, cfg.preempt_ratio) it stops there when a job of another edge
        could take the worker (see _preempting).
        """
        done_before = plan.epochs_done
        remaining = plan.epochs_total - done_before
        if remaining <= 0:  # the previous claim died after its last epoch
            return FineTuneResult(start, 0, len(train))
        last: dict = {}
        best: dict = dict(best_so_far or {})  # epochs counted over the whole job
        if cfg.backtrack and plan.score is None:  # what training starts from scores (resumed: its checkpoint)
            plan.score = curve.before if done_before == 0 else evaluate(start, held)
        n_classes = len(start.class_names)
        # held-out matches of every epoch keep: best may pick (cfg.judge "cross-validated"); a
        # resumed job's earlier claims count with their best epoch, the one they would hand on
        picked_from: list[list[MatchedFrame]] = []
        cross_validate = cfg.keep == "best" and cfg.judge == "cross-validated"
        if cross_validate and best:
            picked_from.append(self._matches(self._model(best["state"], start), held))

        def on_weights(epochs_done: int, state: dict) -> bool | None:
            keeper.check()  # a job taken over stops here rather than train on for nothing
            if epochs_done <= last.get("epochs", 0):  # ultralytics reports the last epoch twice
                return None
            plan.epochs_done = done_before + epochs_done
            model = self._model(state, start)
            if cross_validate:  # the same score, from matches kept for the cross-validation
                matched = self._matches(model, held)
                score = pooled_map50(matched, n_classes)
            else:
                score = evaluate(model, held)
            curve.add(score)
            undo = cfg.backtrack and score < plan.score
            if undo:  # training goes back to the weights this epoch started from, at half the rate
                plan.lr_scale /= 2
                state = last.get("state") or start.state_dict()
                log.info("job %s: epoch %d lowered held-out mAP50 %.3f -> %.3f: undone, lr0 now x%g",
                         job.job_id, plan.epochs_done, plan.score, score, plan.lr_scale)  # fmt: skip
            else:
                plan.score = score
            last.update(epochs=epochs_done, state=state, undone=undo)
            if cross_validate and not undo:
                picked_from.append(matched)
            if not undo and score > best.get("score", -1.0):
                best.update(epochs=plan.epochs_done, state=state, score=score)
                plan.best_epoch, plan.best_score = plan.epochs_done, score
            if self.checkpoints is not None:
                self.checkpoints.save(job.job_id, plan, state, best=best.get("state"))
            if epochs_done < remaining and (reason := curve.stop_reason()) is not None:
                raise StopEarly(reason)
            if epochs_done < remaining:
                if self.at_boundary is not None:
                    self.at_boundary(job, epochs_done)
                changed = self.current_scene(job.edge_id, [])
                scene_left = changed > scene
                if cfg.stop_on_scene_change and scene_left:
                    raise SceneLeft(scene, changed)
                rate = self._gain_rate_left(curve, len(train), remaining - epochs_done)
                if self.checkpoints is not None and (other := self._preempting(job, scene_left, rate)) is not None:
                    if scene_left:  # the rest would train for a scene that is gone: stop, judged as it is
                        raise SceneLeft(scene, changed, for_job=other)
                    won = best.get("score", -1.0) if cfg.keep == "best" else plan.score
                    ripe = cfg.preempt_delivers_rising or not curve.rising()
                    if cfg.preempt_delivers and ripe and won is not None and won > curve.before:
                        raise Delivered(other, plan.epochs_done, won, curve.before)
                    why = "" if rate is None else f"its predicted gain per image-epoch beats this job's {rate:.3g}"
                    raise Preempted(job, other, plan.epochs_done, why)
                if cfg.refresh and self.checkpoints is not None and not scene_left:
                    had, grown = len(plan.train) + len(plan.held), len(self._scene_samples(job.edge_id, scene))
                    if grown >= 2 * had:  # it resumes on all of them (_refreshed)
                        raise Refreshing(job, plan.epochs_done, had, grown)
            return not undo

        workdir = Path(tempfile.mkdtemp(prefix=f"job-{job.job_id}-", dir=self.workdir))
        # distillation (off by default) adds the teacher's features; without it the call is unchanged
        features = TeacherFeatures(self.teacher) if cfg.distill.mode != "off" and self.teacher else None
        distill = {"teacher": features} if features is not None else {}
        try:
            result = fine_tune(
                start,
                train,
                held,
                cfg,
                workdir,
                epochs=remaining,
                seed=self.cfg.seed,
                on_weights=on_weights,
                lr_scale=plan.lr_scale,
                resumed=(done_before, plan.epochs_total) if done_before else None,
                **distill,
            )
        except StopEarly as stop:
            log.info("job %s: stopped after epoch %d: %s", job.job_id, done_before + last["epochs"], stop)
            result = FineTuneResult(self._model(last["state"], start), last["epochs"], len(train))
            if isinstance(stop, SceneLeft):
                result.scene_left_at = stop.changed_at
            if isinstance(stop, Delivered):
                result.delivered_on_preemption = True
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if features is not None:
            result.teacher_images, result.teacher_seconds = features.images, features.seconds
        plan.epochs_done = done_before + result.epochs
        if last.get("undone"):  # the last epoch was undone: training ended on the weights before it
            result.model = self._model(last["state"], start)
        if cfg.keep == "best" and best and best["epochs"] < plan.epochs_done:
            log.info("job %s: keeps epoch %d's weights, its best on held-out frames", job.job_id, best["epochs"])
            result.model = self._model(best["state"], start)
            result.kept_epoch = best["epochs"]
        if len(picked_from) > 1:
            picked = max(pooled_map50(matched, n_classes) for matched in picked_from)
            cross_validated = best_of_cross_validated(picked_from, n_classes)
            result.selection_optimism = max(0.0, picked - cross_validated)
            log.info("job %s: best held-out mAP50 %.3f, %.3f cross-validated over its %d epochs",
                     job.job_id, picked, cross_validated, len(picked_from))  # fmt: skip
        return result

    @staticmethod
    def _model(state: dict, like: StudentModel) -> StudentModel:
        """A model of like's kind (and preprocessing) with the given weights."""
        return StudentModel.from_state(state, like.class_names, like.imgsz, like.arch, preprocess=like.preprocess)

    def _gain_rate_left(self, curve: LearningCurve, images: int, epochs_left: int) -> float | None:
        """With training.preempt_by "gain_rate", the running job's predicted held-out gain still to
        come per image-epoch it has left (inf before the curve predicts: it does not yield yet);
        None with "priority"."""
        if self.cfg.preempt_by != "gain_rate":
            return None
        to_come = curve.gain_to_come()
        return math.inf if to_come is None else to_come / (max(1, images) * max(1, epochs_left))

    def _gain_rate(self, job: TrainingJob, selection: Selection) -> float:
        """A queued job's predicted gain per image-epoch: the manager's prediction over its epochs."""
        train, _, replay = selection
        return (job.predicted_gain or 0.0) / (max(1, len(train) + len(replay)) * self.cfg.epochs)

    def _preempting(
        self, job: TrainingJob, scene_left: bool = False, rate_left: float | None = None
    ) -> TrainingJob | None:
        """A queued job of another edge worth at least preempt_ratio times this one, if any, that
        the worker would serve next and could start at once. With rate_left (training.preempt_by
        "gain_rate"), worth more means a predicted gain per image-epoch above rate_left, this
        job's gain still to come per image-epoch, instead.

        Only a claimed job with checkpoints yields (its work so far is kept); the margin keeps
        two jobs of similar value from taking turns. A job without enough frames of its edge's
        current scene, or one the `admits` hook refuses (the benchmark's training budget), would
        leave the worker idle: this one trains on instead. A job whose edge has left the scene it
        trains for (scene_left) is worth nothing more to that scene: any such job of another edge
        takes the worker (the caller stops it rather than queue it to resume for a scene that is gone).
        """
        ratio = self.cfg.preempt_ratio
        if not ratio or not job.lease:
            return None
        for other in sorted(self.store.list_jobs(status="queued", limit=100), key=job_rank):
            if not scene_left and job_rank(other) >= job_rank(job):  # served after it
                return None
            if other.edge_id == job.edge_id:
                continue
            if not scene_left and rate_left is None and other.priority < ratio * max(job.priority, 1e-9):
                continue
            selection = self.select(other)
            if not scene_left and rate_left is not None and self._gain_rate(other, selection) <= rate_left:
                continue
            if self.ready(*selection[:2]) and (self.admits is None or self.admits(other, selection)):
                return other
        return None

    def _as_delivered(
        self, trained: StudentModel, base_manifest: ModelManifest, base_data: bytes
    ) -> tuple[StudentModel, PreparedUpdate]:
        """The trained model as the edge will rebuild it from its current one, with the delta that does it.

        A lossy downlink encoding (int8, sparse) changes the weights; the rebuilt model is the one
        validated and registered, so cloud and edge hold identical tensors.
        """
        weights, _ = trained.encode()
        update = prepare(weights, base_data, base_manifest.version, self.registry.downlink)
        if not update.lossy:
            return trained, update
        manifest = trained.manifest(update.weights, version=trained.version)
        return StudentModel.from_bytes(manifest, update.weights, source="rebuilt candidate"), update

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Claim and run jobs until stop is set (a job under way is finished first); an unreachable
        store is waited for."""
        while not stop.is_set():
            try:
                job = self.store.claim_job(self.worker_id, timeout_s=poll_s, lease_s=self.lease_s)
                if job is None:
                    continue
                if self.process(job).status == "queued":  # not ready: look again in a while
                    stop.wait(poll_s)
            except StoreUnavailable as exc:  # e.g. Redis restarting: a claimed job's lease lapses and
                log.warning("worker %s waiting for the store: %s", self.worker_id, exc)  # it is taken over
                stop.wait(poll_s)

    def process(self, job: TrainingJob) -> TrainingJob:
        """Run one claimed job under its lease and write back the outcome, if the claim still holds."""
        resuming = " (claimed before: resuming)" if job.attempts > 1 else ""
        log.info("worker %s took job %s for %s%s", self.worker_id, job.job_id, job.edge_id, resuming)
        try:
            with LeaseKeeper(self.store, job, self.lease_s) as keeper:
                job = self.run_job(job, keeper=keeper)
        except LeaseLost as exc:
            log.warning("%s: leaving the job to the worker that took it over", exc)
            return job
        except Preempted as exc:
            log.info("%s", exc)
            job.status, job.error = "queued", str(exc)
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        if job.status != "queued":
            job.finished = self.clock()
            JOB_DURATION.labels(job.status).observe(max(0.0, job.finished - job.started))
        if not self.store.complete_job(job):
            log.warning(
                "job %s: lost its lease before completing; the worker that took it over finishes it", job.job_id
            )
            return job
        if job.status != "queued" and self.checkpoints is not None:
            self.checkpoints.clear(job.job_id)
        return job


def _gain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def log_outcome(job: TrainingJob, before: float, score: float, chose_first: bool = False) -> None:
    """One INFO line per finished job: predicted against achieved gain, so the predictor can be judged."""
    if job.result_version:
        which = "the first model again" if chose_first else "the candidate"
        verdict = f"v{job.result_version} registered ({which}, mAP50 {before:.3f} -> {score:.3f})"
    elif job.error:  # not registered for another reason than its score: pinned, or the scene has gone
        verdict = job.error
    else:
        verdict = (
            f"candidate worse (mAP50 {before:.3f} -> {job.metrics.get('map50_after', before):.3f}), not registered"
        )
    log.info(
        "job %s (edge %s): predicted gain %s, achieved gain %s; %s; %d epochs, attempt %d, worker %s",
        job.job_id,
        job.edge_id,
        _gain(job.predicted_gain),
        _gain(job.achieved_gain),
        verdict,
        int(job.metrics.get("epochs", 0)),
        job.attempts,
        job.worker_id or "-",
    )
