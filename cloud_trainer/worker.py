"""The training worker: claims a job, fine-tunes the edge's student, validates, registers.

A candidate is registered only if its mAP50 on held-out fresh teacher-labelled frames is not
worse than the current model's (within the configured tolerance). Training data is the
newest labelled samples (minus the held-out ones) plus a replay share of older samples,
against forgetting the scenes seen before.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import StateStore
from cloud_trainer.training import LabelledFrame, evaluate, fine_tune
from edgesync.config import TrainingConfig
from edgesync.delta import PreparedUpdate, prepare
from edgesync.student import StudentModel
from edgesync.types import ModelManifest, StoredSample, TrainingJob

log = logging.getLogger(__name__)


def split_fresh(fresh: list[StoredSample], cfg: TrainingConfig) -> tuple[list[StoredSample], list[StoredSample]]:
    """Split fresh samples into training and held-out ones.

    "interleaved" (the default) spreads the held-out share evenly through the window, so both sets
    span the same scenes. "newest" holds out the most recent arrivals, so a candidate must beat the
    current model on what the camera sees now; with a few dozen samples per job that set is small
    and noisy, and it did worse on the dev benchmark (BENCHMARKS.md).
    """
    fresh = sorted(fresh, key=lambda s: s.seq)
    n_held = min(len(fresh) - 1, max(cfg.min_heldout, round(len(fresh) * cfg.heldout_fraction)))
    if n_held <= 0:
        return fresh, []
    if cfg.heldout == "newest":
        return fresh[:-n_held], fresh[-n_held:]
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
    ) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.worker_id = worker_id
        self.workdir = workdir
        self.clock = clock  # the benchmark passes its virtual clock

    # ------------------------------------------------------------ data

    def _frames(self, samples: list[StoredSample]) -> list[LabelledFrame]:
        frames = []
        for s in samples:
            jpeg = self.store.get_jpeg(s.edge_id, s.sample_id)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                frames.append(LabelledFrame(image, list(s.labels or []), f"{s.seq:08d}"))
        return frames

    def select(self, job: TrainingJob) -> tuple[list[StoredSample], list[StoredSample], list[StoredSample]]:
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
        rng = random.Random(job.job_id)
        replay = rng.sample(older, min(n_replay, len(older)))
        return train, held, replay

    def current_scene(self, edge_id: str, newest: list[StoredSample]) -> float:
        """Start of the edge's current scene: the newest reported scene change, else the newest sample's."""
        reported = self.store.get_meta(edge_id).get("scene_changed_at", 0.0)
        return max(reported, newest[0].scene_start if newest else 0.0)

    def ready(self, train: list[StoredSample], held: list[StoredSample]) -> bool:
        """Whether a job has enough frames of the current scene to train and judge a model."""
        return len(train) + len(held) >= self.cfg.min_fresh and bool(held)

    # ------------------------------------------------------------ one job

    def run_job(self, job: TrainingJob, max_epochs: int | None = None) -> TrainingJob:
        """Train, validate and (if not worse) register; returns the finished job.

        max_epochs caps the configured epochs (a training budget running out).
        """
        started = time.monotonic()
        train, held, replay = self.select(job)
        if not self.ready(train, held):
            job.status, job.error = "queued", f"waiting for {self.cfg.min_fresh} labelled frames of the current scene"
            return job
        base_manifest, data = self.registry.load(job.edge_id, self.registry.latest_version(job.edge_id))
        current = StudentModel.from_bytes(base_manifest, data, source=f"{job.edge_id} v{base_manifest.version}")
        held_frames = self._frames(held)
        train_frames = self._frames(train) + self._frames(replay)
        if not any(f.labels for f in held_frames):  # an empty ground truth cannot tell two models apart
            job.status, job.error = "done", "held-out frames have no teacher boxes: cannot validate; not trained"
            job.metrics = {"train_samples": float(len(train)), "heldout_samples": float(len(held))}
            log.warning("job %s: %s", job.job_id, job.error)
            return job
        workdir = Path(tempfile.mkdtemp(prefix=f"job-{job.job_id}-", dir=self.workdir))
        try:
            epochs = min(self.cfg.epochs, max_epochs or self.cfg.epochs)
            result = fine_tune(current, train_frames, held_frames, self.cfg, workdir, epochs=epochs, seed=0)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        before = evaluate(current, held_frames)
        trained = evaluate(result.model, held_frames)
        candidate, update = self._as_delivered(result.model, base_manifest, data)
        after = evaluate(candidate, held_frames) if update.lossy else trained
        job.metrics = {
            "map50_before": before,
            "map50_after": after,  # of the model the edge will rebuild, which is what gets registered
            "map50_trained": trained,
            "gain": after - before,
            "train_samples": float(len(train)),
            "replay_samples": float(len(replay)),
            "heldout_samples": float(len(held)),
            "epochs": float(result.epochs),
            "image_epochs": float(result.image_epochs),
            "train_seconds": time.monotonic() - started,
        }
        chosen, score = (candidate, after) if after + self.cfg.tolerance >= before else (None, before)
        if self.cfg.fallback_to_first and base_manifest.version > 1:
            # RECL-style reuse, smallest form: the scene may have returned to what the first model knew
            first_manifest, first_data = self.registry.load(job.edge_id, 1)
            first = StudentModel.from_bytes(first_manifest, first_data, source=f"{job.edge_id} v1")
            first_score = evaluate(first, held_frames)
            job.metrics["map50_first"] = first_score
            if first_score > max(before, score):
                chosen, score = first, first_score
        if chosen is not None:
            payload = update.weights if chosen is candidate else chosen.encode()[0]
            deltas = [update.payload] if chosen is candidate and update.payload is not None else []
            manifest = chosen.manifest(
                payload,
                parent=base_manifest.version,
                # the scene (edge clock) it was chosen for: the edge stops treating it as novel
                metrics={"map50": score, "parent_map50": before, "scene_start": train[0].scene_start if train else 0.0},
                trained_until=max((s.received_time for s in train), default=self.clock()),
            )
            stored = self.registry.register(job.edge_id, payload, manifest, payloads=deltas)
            job.result_version = stored.version
            self.store.set_meta(job.edge_id, last_model_time=self.clock())
            what = "candidate" if chosen is candidate else "the first model again"
            log.info("job %s: v%d registered, %s (mAP50 %.3f -> %.3f)", job.job_id, stored.version, what, before, score)
        else:
            log.info("job %s: candidate worse (mAP50 %.3f -> %.3f); not registered", job.job_id, before, after)
        job.status = "done"
        return job

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

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Claim and run jobs until stop is set."""
        while not stop.is_set():
            job = self.store.claim_job(self.worker_id, timeout_s=poll_s)
            if job is None:
                continue
            log.info("worker %s took job %s for %s", self.worker_id, job.job_id, job.edge_id)
            try:
                job = self.run_job(job)
            except Exception as exc:
                log.exception("job %s failed", job.job_id)
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            if job.status == "queued":  # not ready: back in the queue, look again in a while
                self.store.put_job(job)
                stop.wait(poll_s)
                continue
            job.finished = self.clock()
            self.store.update_job(job)
