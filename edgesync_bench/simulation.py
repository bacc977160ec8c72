"""One strategy over one or several drifting streams (cameras) sharing one cloud, in virtual time.

Frames arrive at the video's frame rate. The simulated edge runs the real student on the
drifted frame and the real sampler; selected samples cross a simulated uplink into the real
cloud code (Ingest, MemoryStore, Labeller with the real teacher, the strategy's trigger,
TrainingWorker with ultralytics, ModelRegistry). Each piece of cloud work is done for real
when its virtual start time comes, and its result becomes visible at start + its cost in the
cost model, so the outcome depends on the seed, not on how fast this machine is.

Several cameras (each its own edge id, drift schedule, seed and start in the video, its own
links and sampler) share one store, teacher, registry, training worker and training budget: the
strategy's `order` then decides which edge's queued job the worker takes next.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_trainer.checkpoints import JobCheckpoints
from cloud_trainer.ingest import Ingest
from cloud_trainer.labeller import Labeller
from cloud_trainer.profiler import profile_evaluations, profile_image_epochs
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import MemoryStore
from cloud_trainer.worker import Preempted, Selection, TrainingWorker
from edgesync.config import LimitsConfig
from edgesync.student import Prediction
from edgesync.teachers import Teacher
from edgesync.types import ModelManifest, Sample, SceneChange
from edgesync_bench.camera import Camera
from edgesync_bench.lockstep import LockstepJob
from edgesync_bench.strategies import Strategy, queue_priority
from edgesync_bench.stream import BenchKnobs, StrategyRun, StreamSetup, VirtualClock

log = logging.getLogger(__name__)


class PredictionCache:
    """Student predictions by (model, camera, frame index), the model named by its weights' sha256
    and its preprocessing (ModelManifest.model_key): strategies running the same model on the same
    camera's frame share them."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], Prediction] = {}

    def get(self, model: str, camera: str, index: int) -> Prediction | None:
        return self._cache.get((model, camera, index))

    def put(self, model: str, camera: str, index: int, prediction: Prediction) -> None:
        self._cache[(model, camera, index)] = prediction


class CachingTeacher(Teacher):
    """The real teacher, remembering its answers per frame content (strategies upload the same frames)."""

    def __init__(self, teacher: Teacher) -> None:
        self.inner = teacher
        self.name = teacher.name
        self.class_names = teacher.class_names
        self._cache: dict[bytes, list] = {}

    @property
    def labels_key(self) -> str:
        return self.inner.labels_key

    def label(self, frames: list[np.ndarray]) -> list:
        import hashlib

        keys = [hashlib.sha1(f.tobytes()).digest() for f in frames]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            for i, boxes in zip(missing, self.inner.label([frames[i] for i in missing]), strict=True):
                self._cache[keys[i]] = boxes
        return [list(self._cache[k]) for k in keys]

    def features(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Not cached: distillation asks for augmented training images, each new."""
        return self.inner.features(frames)


class _ByEdge:
    """The labeller's listener: each labelled batch goes to the trigger of the edge it came from."""

    def __init__(self, cameras: dict[str, Camera]) -> None:
        self.cameras = cameras

    def on_labelled(self, samples) -> None:
        by_edge: dict[str, list] = {}
        for s in samples:
            by_edge.setdefault(s.edge_id, []).append(s)
        for edge_id, batch in by_edge.items():
            trigger = self.cameras[edge_id].trigger
            if trigger is not None:
                trigger.on_labelled(batch)


@dataclass
class _JobSize:
    """What a job would train if it started now (Simulation._size)."""

    images: int  # training images per epoch (fresh and replay)
    heldout: int
    probing_s: float  # GPU-seconds of the profiler's probes before its first epoch
    epochs: int  # as many as the budget affords, up to the job's
    tokens: float  # the budget available
    wanted: float  # the budget it waits for

    @property
    def affordable(self) -> bool:
        return self.tokens >= self.wanted and self.epochs >= 1


@dataclass
class _Running:
    """The job on the worker, run in lock-step with the stream."""

    run: LockstepJob
    started: float  # virtual time it was claimed
    images: int  # training images per epoch
    heldout: int  # held-out frames scored after each epoch
    probing_s: float  # GPU-seconds of the profiler's probes before its first epoch
    charged: float = 0.0  # GPU-seconds of its work charged to the budget so far, boundary by boundary


class Simulation:
    """Runs one strategy over the stream(s); see the module docstring.

    Each job runs in lock-step with the stream (edgesync_bench.lockstep): at every epoch boundary
    it waits until the stream has reached that moment, so the worker sees the store as it is then,
    as the live worker does (the edge's scene changes, the queue, the job itself as running). With
    several cameras and training.preempt_ratio above 0 it also checkpoints every epoch, so that a
    much more valuable job of another camera can pre-empt it at a boundary; the pre-empted job
    resumes from its checkpoint. One camera has nothing to yield to, but with training.refresh a
    job yields to itself to take in its scene's newer frames, so it checkpoints then too.
    """

    def __init__(
        self,
        strategy: Strategy,
        setup: StreamSetup,
        knobs: BenchKnobs,
        teacher: Teacher,
        predictions: PredictionCache,
        workdir: Path,
    ) -> None:
        self.strategy = strategy
        self.setup = setup
        self.knobs = knobs
        self.predictions = predictions
        self.workdir = workdir
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        self.clock = VirtualClock()
        self.store = MemoryStore()
        self.registry = ModelRegistry(workdir / "registry", downlink=strategy.downlink or knobs.downlink)
        self.training = knobs.training.model_copy(update=strategy.training)
        self.ingest = Ingest(self.store, LimitsConfig(), clock=self.clock)
        self.cameras = {cam.edge_id: Camera(self, cam) for cam in setup.camera_setups()}
        self.labeller = Labeller(self.store, teacher, _ByEdge(self.cameras), batch_size=1, max_wait_s=0)
        preempts = len(self.cameras) > 1 and self.training.preempt_ratio > 0
        resumes = preempts or self.training.refresh  # a refreshing job yields to itself (worker.Refreshing)
        self._running: _Running | None = None
        self.worker = TrainingWorker(
            self.store,
            self.registry,
            self.training,
            "bench-worker",
            workdir=workdir,
            clock=self.clock,
            teacher=teacher,
            checkpoints=JobCheckpoints(workdir / "checkpoints") if resumes else None,
            at_boundary=self._at_boundary,
            admits=self._admits if preempts else None,
        )
        self._events: list = []
        self._order = itertools.count()
        self._teacher_free_at = 0.0
        self._worker_free_at = 0.0
        self._training_job = False
        self._tokens_spent = 0.0
        self._wanted: dict[str, float] = {}  # job id -> budget it waits for (see _maybe_start_job)
        self._epochs_left: dict[str, int] = {}  # job id -> epochs a pre-empted job has still to train
        self._gpu_s_by_edge: dict[str, float] = dict.fromkeys(self.cameras, 0.0)

    @property
    def run_result(self) -> StrategyRun:
        """The single camera's run (the single-stream bench)."""
        (camera,) = self.cameras.values()
        return camera.result

    # ------------------------------------------------------------ events

    def push(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self._events, (t, next(self._order), kind, payload))

    def _advance(self, until: float) -> None:
        """Handle every cloud event due by until, in time order."""
        while True:
            self._maybe_start_job(min(until, max(self._worker_free_at, self.clock.now)))
            if not self._events or self._events[0][0] > until:
                break
            t, _, kind, payload = heapq.heappop(self._events)
            self.clock.now = t
            getattr(self, f"_on_{kind}")(t, payload)
        self.clock.now = until

    def _on_arrive(self, t: float, sample: Sample) -> None:
        if self.ingest.accept(sample):
            start = max(t, self._teacher_free_at)
            self._teacher_free_at = start + self.knobs.costs.teacher(1)
            self.push(self._teacher_free_at, "label", sample.sample_id)

    def _on_label(self, t: float, sample_id: str) -> None:
        batch = self.store.take_unlabelled(1, timeout_s=0)
        if batch:
            self.labeller.label_batch(batch)

    def _on_job_done(self, t: float, job) -> None:
        self._training_job = False
        self.store.update_job(job)
        if job.result_version:
            self.store.set_meta(job.edge_id, last_model_time=t)
            self.cameras[job.edge_id].ship(t, job.result_version)

    def _on_deploy(self, t: float, update: tuple[str, ModelManifest, bytes]) -> None:
        edge_id, manifest, payload = update
        self.cameras[edge_id].deploy(t, manifest, payload)

    def _on_scene_change(self, t: float, change: SceneChange) -> None:
        camera = self.cameras[change.edge_id]
        if camera.scenes is None:
            return
        version = camera.scenes.handle(change)
        if version:
            camera.ship(t, version)
        self._resize_for_new_scene(change.edge_id, t)

    def _resize_for_new_scene(self, edge_id: str, t: float) -> None:
        """After edge_id's scene changed, its queued job trains on the new scene's frames
        (worker.select), not on those it was sized on when first claimed: it no longer waits for
        their budget, and a worker waiting for budget looks at the queue again now."""
        queued = self.store.queued_job_for(edge_id)
        if queued is not None and self._wanted.pop(queued.job_id, None) is not None and not self._training_job:
            self._worker_free_at = min(self._worker_free_at, t)

    # ------------------------------------------------------------ training

    def _tokens(self, t: float) -> float:
        """Training budget available at t: the share accrued so far, banked up to bank_s, minus spending."""
        knobs = self.knobs
        earned = knobs.train_share * t
        if earned - self._tokens_spent > knobs.train_share * knobs.bank_s:  # unused share beyond the bank lapses
            self._tokens_spent = earned - knobs.train_share * knobs.bank_s
        return earned - self._tokens_spent

    def _order_queue(self) -> None:
        """Rank the queued jobs by the strategy's order before the worker claims one.

        None keeps the training manager's priorities (predicted gain x staleness); fifo ranks by
        arrival; fair serves the edge that has had the least training time so far.
        """
        order = self.strategy.order
        if order is None:
            return
        for job in self.store.list_jobs(status="queued", limit=10_000):
            self.store.reprioritize_job(job.job_id, queue_priority(order, job, self._gpu_s_by_edge))

    def _maybe_start_job(self, t: float) -> None:
        if self._training_job or self._worker_free_at > t:
            return
        self._order_queue()
        job = self.store.claim_job("bench-worker", timeout_s=0)
        if job is None:
            return
        self.clock.now = t
        size = self._size(job, t, claiming=True)
        if size is None:  # too few frames of the current scene yet
            self._requeue(job, t + 1.0)
            return
        if not size.affordable:  # wait for the share to accrue, then try again
            self._requeue(job, t + (size.wanted - size.tokens) / self.knobs.train_share + 1e-6)
            return
        images, held, probing, epochs = size.images, size.heldout, size.probing_s, size.epochs
        self._training_job = True
        run = LockstepJob(self.worker, job, epochs)
        self._running = _Running(run, t, images, held, probing)
        run.start()
        self._job_stepped(self._running)

    def _size(self, job, t: float, claiming: bool = False, selection: Selection | None = None) -> _JobSize | None:
        """What job would train if it started at t, and whether the budget affords it (None: not
        enough frames of its edge's current scene yet). selection: the job's samples, if the
        worker has already drawn them (worker.select).

        How long: a job starts once the budget affords at least half its epochs, then trains as
        many as the budget affords (up to all); waiting for all of them costs more accuracy than it
        buys. A job waiting for budget keeps the size it had when first claimed: samples that
        arrive meanwhile join its data but must not make it wait longer (it would chase the stream).
        Its edge's scene changing is the exception: its data is then the new scene's frames, and
        it is sized afresh (_resize_for_new_scene).
        """
        costs = self.knobs.costs
        train, held, replay = selection or self.worker.select(job)
        if not self.worker.ready(train, held):
            return None
        images = max(1, len(train) + len(replay))
        tokens = self._tokens(t)
        cap = self.knobs.train_share * self.knobs.bank_s
        left = self._epochs_left.get(job.job_id, self.training.epochs)  # fewer for a pre-empted job
        distill = self.training.distill.mode  # distillation's teacher passes make each epoch dearer
        probing = self._probing_s(images, len(held))  # the profiler's probes come first
        recalibration = len(train) if self.training.recalibrate_bn else 0  # re-estimating batch-norm statistics
        least = costs.training(
            images * math.ceil(left / 2),
            len(held),
            self.training.imgsz,
            distill=distill,
            recalibration_frames=recalibration,
        )
        at_least = least * costs.gpu_speedup + probing
        if claiming:
            self._wanted.setdefault(job.job_id, at_least)
        wanted = min(self._wanted.get(job.job_id, at_least), cap)
        affordable = costs.epochs_within(
            tokens - probing, images, len(held), self.training.imgsz, distill, recalibration_frames=recalibration
        )
        return _JobSize(images, len(held), probing, min(left, affordable), tokens, wanted)

    def _admits(self, job, selection: Selection) -> bool:
        """The worker's pre-emption hook: whether job, with the samples the worker drew for it,
        could start now within the training budget."""
        size = self._size(job, self.clock.now, selection=selection)
        return size is not None and size.affordable

    def _at_boundary(self, job, epochs_done: int) -> None:
        """The worker's epoch-boundary hook: pause the running job's thread (see LockstepJob)."""
        assert self._running is not None and self._running.run.job.job_id == job.job_id
        self._running.run.at_boundary(job, epochs_done)

    def _boundary_time(self, running: _Running) -> float:
        """Virtual time at which the running job reaches the epoch boundary it is paused at: its
        probes, then each epoch's training and held-out scoring so far."""
        costs, n = self.knobs.costs, running.run.epochs_done
        work = costs.training(n * running.images, running.heldout, self.training.imgsz, n, self.training.distill.mode)
        return running.started + running.probing_s / costs.gpu_speedup + work

    def _job_stepped(self, running: _Running) -> None:
        """After the running job moved: wait for its next boundary in virtual time, or settle its end."""
        run = running.run
        if not run.finished:
            self.push(self._boundary_time(running), "boundary", running)
            return
        self._running = None
        if isinstance(run.error, Preempted):
            self._job_preempted(running, run.error)
        elif run.error is not None:
            raise run.error
        else:
            self._job_ended(running)

    def _on_boundary(self, t: float, running: _Running) -> None:
        self._charge_progress(running, t)  # so the budget the pre-emption check sees is what is left
        running.run.resume()  # the worker now looks at the queue as it stands at t
        self._job_stepped(running)

    def _charge_progress(self, running: _Running, t: float) -> None:
        """Charge the running job's work up to t that is not charged yet."""
        done = (t - running.started) * self.knobs.costs.gpu_speedup
        self._charge(running.run.job.edge_id, done - running.charged, 0)
        running.charged = done

    def _job_preempted(self, running: _Running, exc: Preempted) -> None:
        """A job yielded the worker at an epoch boundary: charge the epochs it trained and put it
        back in the queue (its checkpoint holds them), as the live worker does."""
        job, t0 = running.run.job, running.started
        now = self._boundary_time(running)
        log.info("%s", exc)
        job.status, job.error = "queued", str(exc)
        self.store.complete_job(job)
        self._wanted.pop(job.job_id, None)  # resumed, it waits for the budget of what is left
        self._epochs_left[job.job_id] = max(1, running.run.max_epochs - running.run.epochs_done)
        # its GPU-seconds up to this boundary are charged (_on_boundary); its iterations are not yet
        self._charge(job.edge_id, 0.0, self._iterations(running.run.epochs_done, running.images))
        self.cameras[job.edge_id].result.jobs.append(
            {
                "job_id": job.job_id,
                "started": t0,
                "finished": now,
                "version": None,
                "preempted_by": exc.by.job_id,  # its own with training.refresh (worker.Refreshing)
                "epochs": float(running.run.epochs_done),
            }
        )
        self._worker_free_at = now
        self._training_job = False

    def _iterations(self, epochs: float, images: int) -> int:
        """Training iterations (batches) of epochs over images."""
        return int(epochs * math.ceil(images / min(self.training.batch, images)))

    def _charge(self, edge_id: str, gpu_s: float, iterations: int) -> None:
        result = self.cameras[edge_id].result
        result.train_gpu_s += gpu_s
        result.train_iterations += iterations
        self._gpu_s_by_edge[edge_id] += gpu_s
        self._tokens_spent += gpu_s

    def _job_ended(self, running: _Running) -> None:
        """Charge a finished job's work (from what it reports, less what its boundaries already
        charged), and ship its model when the work is done."""
        job, t, images = running.run.outcome, running.started, running.images
        costs = self.knobs.costs
        image_epochs = job.metrics.get("image_epochs", 0.0)
        held_n, evaluations = int(job.metrics.get("heldout_samples", 0)), int(job.metrics.get("heldout_evaluations", 0))
        evaluations += "win_rate" in job.metrics  # the paired bootstrap scored the current model once more
        evaluations += int(job.metrics.get("preprocess_evaluations", 0))  # the start scored in other views
        evaluations += int(job.metrics.get("first_evaluations", 0))  # the first model, in each view
        evaluations += int(job.metrics.get("refresh_evaluations", 0))  # a refreshed job's best epoch, rescored
        duration = costs.training(
            image_epochs,
            held_n,
            self.training.imgsz,
            evaluations,
            distill=self.training.distill.mode,
            distilled_image_epochs=job.metrics.get("distill_teacher_images", 0.0),
            recalibration_frames=int(job.metrics.get("recalibration_frames", 0)),
            new_scene_frames=int(job.metrics.get("new_scene_frames", 0) + job.metrics.get("later_frames", 0)),
            forward_images=int(job.metrics.get("bn_shift_images", 0)),
        )
        # a resumed job reports the epochs of every claim; this claim trained those after resumed_from_epoch
        claimed_epochs = job.metrics.get("epochs", 0) - job.metrics.get("resumed_from_epoch", 0)
        left = duration * costs.gpu_speedup - running.charged
        self._charge(job.edge_id, left, self._iterations(claimed_epochs, images))
        if self.worker.checkpoints is not None:
            self.worker.checkpoints.clear(job.job_id)
        done = max(t + duration, self.clock.now)  # a lock-step job ends at its last boundary at the earliest
        job.finished = done
        self.cameras[job.edge_id].result.jobs.append(
            {"job_id": job.job_id, "started": t, "finished": done, "version": job.result_version}
            | {k: round(v, 4) for k, v in job.metrics.items()}
        )
        self._worker_free_at = done
        self.push(done, "job_done", job)

    def _probing_s(self, images: int, heldout: int) -> float:
        """GPU-seconds the job profiler's probes take before a job of `images` frames trains (0 without
        candidates): their image-epochs and their held-out scoring after each probe epoch."""
        work = profile_image_epochs(self.training, images)
        if not work:
            return 0.0
        evaluations = profile_evaluations(self.training)
        costs = self.knobs.costs
        with_probes = costs.training(work, heldout, self.training.imgsz, evaluations)
        return (with_probes - costs.training(0, heldout, self.training.imgsz)) * costs.gpu_speedup

    def _requeue(self, job, retry_at: float) -> None:
        job.status = "queued"
        self.store.put_job(job)
        self._worker_free_at = retry_at

    # ------------------------------------------------------------ the stream

    def run(self, on_frame: Callable[[int], None] | None = None) -> StrategyRun:
        """The single camera's run; see run_all for several."""
        self.run_all(on_frame)
        return self.run_result

    def run_all(self, on_frame: Callable[[int], None] | None = None) -> dict[str, StrategyRun]:
        """Stream every camera frame by frame, the cloud advancing between frames; runs by edge id."""
        for i in range(self.setup.total_frames):
            t = i / self.setup.fps
            self._advance(t)
            for camera in self.cameras.values():
                camera.step(i, t)
            if on_frame is not None:
                on_frame(i)
        if self._running is not None:  # the stream ended with a job paused at an epoch boundary
            self._running.run.close()
            self._running = None
        return {edge_id: camera.finish() for edge_id, camera in self.cameras.items()}
