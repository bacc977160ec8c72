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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud_trainer.ingest import Ingest
from cloud_trainer.labeller import Labeller
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.scenes import SceneChangeHandler
from cloud_trainer.state import MemoryStore
from cloud_trainer.worker import TrainingWorker
from cloud_trainer.zoo import ModelZoo
from edgesync.config import ChangePointConfig, DownlinkConfig, LimitsConfig, SamplerConfig, TrainingConfig
from edgesync.delta import decode_update
from edgesync.drift import DriftApplier, DriftSchedule
from edgesync.sampling import FrameInfo, build_sampler
from edgesync.student import Prediction, StudentModel
from edgesync.teachers import Teacher
from edgesync.types import EdgeInfo, ModelManifest, Sample, SceneChange, detections_to_array
from edgesync.weights import sha256_hex
from edgesync_bench.costs import CostModel, Link
from edgesync_bench.scene_changes import DetectorChanges, Noticed, OracleChanges, SceneChanges
from edgesync_bench.strategies import Strategy, Trigger, queue_priority

log = logging.getLogger(__name__)

EDGE_ID = "bench-cam"
EDGE_KEEPS = 3  # models the edge keeps (EdgeModelStore's default)
SCENE_CHANGE_BYTES = 64  # a scene-change report without its signatures (8 bytes per signature value)


class VirtualClock:
    """The simulation's time; cloud code reads it where it would read the wall clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class CameraSetup:
    """One simulated camera: its edge id, drift schedule and seed, and where in the video it starts."""

    edge_id: str
    schedule: DriftSchedule
    seed: int
    offset_frames: int = 0


@dataclass
class StreamSetup:
    """Everything strategies share: footage, schedule(s), ground truth, the starting student.

    One camera (the single-stream bench) uses schedule and seed; `cameras` replaces them with
    several cameras sharing the cloud.
    """

    frames: list[np.ndarray]  # the clean video, in memory
    fps: float
    schedule: DriftSchedule
    seed: int
    truth: list[np.ndarray]  # teacher boxes on each clean video frame
    base_manifest: ModelManifest
    base_weights: bytes
    eval_from_s: float  # frames before this (the bootstrap's clean segment) are not scored
    duration_s: float
    num_classes: int
    cameras: list[CameraSetup] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        return int(math.floor(self.duration_s * self.fps))

    def camera_setups(self) -> list[CameraSetup]:
        return self.cameras or [CameraSetup(EDGE_ID, self.schedule, self.seed)]


@dataclass
class BenchKnobs:
    """Budgets and links, equal for every strategy."""

    sampler: SamplerConfig
    training: TrainingConfig
    costs: CostModel
    uplink_kbit_s: float = 2000.0
    downlink_kbit_s: float = 10000.0
    rtt_s: float = 0.05
    train_share: float = 0.4  # GPU-seconds (at speedup 1) this camera earns per stream second
    bank_s: float = 150.0  # unused share is kept for at most this many seconds' worth
    downlink: DownlinkConfig = field(default_factory=DownlinkConfig)  # a strategy's own wins


@dataclass
class FrameResult:
    t_s: float
    segment: str
    model_version: int
    pred: np.ndarray
    truth: np.ndarray


@dataclass
class UpdateResult:
    version: int
    deployed_at: float
    trained_until: float
    delay_s: float  # deploy time minus the arrival of the newest sample it was trained on
    bytes: int  # payload on the downlink (a delta where the registry sent one)
    zoo_of: int = 0  # a stored model sent again by the zoo: the version it copies
    chosen_for: float = 0.0  # start of the scene it was chosen for (0: the general model)


@dataclass
class StrategyRun:
    """What one strategy did and how well the edge detected meanwhile."""

    name: str
    frames: list[FrameResult] = field(default_factory=list)
    updates: list[UpdateResult] = field(default_factory=list)
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (capture t, arrival t) per sample
    uplink_bytes: int = 0
    downlink_bytes: int = 0
    samples: int = 0
    jobs: list[dict] = field(default_factory=list)
    train_iterations: int = 0
    train_gpu_s: float = 0.0  # at speedup 1
    scene_changes: list[float] = field(default_factory=list)  # stream times the edge noticed a change


class PredictionCache:
    """Student predictions by (model sha256, camera, frame index): strategies running the same model
    on the same camera's frame share them."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], Prediction] = {}

    def get(self, sha: str, camera: str, index: int) -> Prediction | None:
        return self._cache.get((sha, camera, index))

    def put(self, sha: str, camera: str, index: int, prediction: Prediction) -> None:
        self._cache[(sha, camera, index)] = prediction


class CachingTeacher(Teacher):
    """The real teacher, remembering its answers per frame content (strategies upload the same frames)."""

    def __init__(self, teacher: Teacher) -> None:
        self.inner = teacher
        self.name = teacher.name
        self.class_names = teacher.class_names
        self._cache: dict[bytes, list] = {}

    def label(self, frames: list[np.ndarray]) -> list:
        import hashlib

        keys = [hashlib.sha1(f.tobytes()).digest() for f in frames]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            for i, boxes in zip(missing, self.inner.label([frames[i] for i in missing]), strict=True):
                self._cache[keys[i]] = boxes
        return [list(self._cache[k]) for k in keys]


class Camera:
    """One simulated edge: drift, student, sampler, change points, links, and what it saw."""

    def __init__(self, sim: Simulation, cam: CameraSetup) -> None:
        strategy, setup, knobs = sim.strategy, sim.setup, sim.knobs
        self.sim = sim
        self.setup = cam
        self.edge_id = cam.edge_id
        sim.registry.register(cam.edge_id, setup.base_weights, setup.base_manifest)
        names = list(setup.base_manifest.class_names)
        sim.store.upsert_edge(EdgeInfo(edge_id=cam.edge_id, class_names=names, model_version=1))
        sim.store.set_meta(cam.edge_id, first_seen=0.0, last_model_time=0.0)
        self.trigger: Trigger | None = None
        if strategy.trigger is not None:
            self.trigger = strategy.trigger(sim.store, sim.registry, cam.edge_id, sim.clock)
        sampler_cfg = knobs.sampler.model_copy(update={"type": strategy.sampler or knobs.sampler.type})
        self.sampler = build_sampler(sampler_cfg) if strategy.sampler else None
        self.drift = DriftApplier(cam.schedule, cam.seed)
        self.changes: SceneChanges | None = None
        self.scenes: SceneChangeHandler | None = None
        if strategy.changes is not None:
            if strategy.changes == "oracle":
                self.changes = OracleChanges(cam.schedule)
            elif strategy.changes == "detector":
                self.changes = DetectorChanges(ChangePointConfig())
            else:
                raise ValueError(f"strategy {strategy.name}: unknown scene-change source {strategy.changes!r}")
            manager = getattr(self.trigger, "manager", None)
            if manager is not None:
                zoo = ModelZoo(sim.registry) if manager.cfg.zoo else None
                self.scenes = SceneChangeHandler(sim.store, manager, zoo)
        self.uplink = Link(knobs.uplink_kbit_s, knobs.rtt_s)
        self.downlink = Link(knobs.downlink_kbit_s, knobs.rtt_s)
        self.deployed = StudentModel.from_bytes(setup.base_manifest, setup.base_weights, source="base model")
        self.deployed_sha = setup.base_manifest.sha256
        self.edge_models = {1: setup.base_weights}  # what the edge's model store keeps: deltas' bases
        self.result = StrategyRun(strategy.name)

    # ------------------------------------------------------------ the stream

    def step(self, i: int, t: float) -> None:
        """Frame i of this camera's stream arrives at t: detect, score, sample, watch for changes."""
        setup, result = self.sim.setup, self.result
        if self.trigger is not None:
            self.trigger.on_tick(t)
        video_index = (i + self.setup.offset_frames) % len(setup.frames)
        image = _LazyDriftedFrame(self.drift, setup.frames[video_index], t, i)
        prediction = self._predict(i, image)
        if t >= setup.eval_from_s:
            result.frames.append(
                FrameResult(
                    t,
                    self.drift.condition_at(t),
                    self.deployed.version,
                    detections_to_array(prediction.detections),
                    setup.truth[video_index],
                )
            )
        if self.sampler is not None and self.changes is not None:
            noticed = self.changes.update(t, prediction, image)
            if noticed is not None:
                self._report_scene_change(noticed, t)
        if self.sampler is not None:
            info = FrameInfo(t, i, prediction.scores, tuple(prediction.detections))
            for selected in self.sampler.offer(info, image()):
                self._send(selected, t)

    def _predict(self, index: int, image: Callable[[], np.ndarray]) -> Prediction:
        predictions = self.sim.predictions
        cached = predictions.get(self.deployed_sha, self.edge_id, index)
        if cached is None:
            cached = self.deployed.predict([image()])[0]
            predictions.put(self.deployed_sha, self.edge_id, index, cached)
        return cached

    def _send(self, selected, t: float) -> None:
        info = selected.info
        sample = selected.to_sample(f"s{info.frame_index:07d}", self.edge_id, self.deployed.version)
        arrival = self.uplink.send(max(t, selected.released_s), selected.nbytes)
        self.result.samples += 1
        self.result.arrivals.append((info.t_s, arrival))
        self.sim.push(arrival, "arrive", sample)

    def _report_scene_change(self, noticed: Noticed, t: float) -> None:
        """The edge marks the new scene in its sampler and tells the cloud (one message up the link)."""
        assert self.sampler is not None
        previous_start = self.sampler.scene_change_s or 0.0
        self.sampler.mark_scene_change(noticed.t_s)
        self.result.scene_changes.append(noticed.t_s)
        change = SceneChange(
            self.edge_id,
            noticed.t_s,
            previous_start,
            noticed.previous_signature,
            noticed.signature,
            self.deployed.version,
            noticed.confidence,
        )
        self.sim.push(self.uplink.send(t, SCENE_CHANGE_BYTES + 8 * len(noticed.signature)), "scene_change", change)

    # ------------------------------------------------------------ updates

    def ship(self, t: float, version: int) -> None:
        """Send a version down the link as the registry delivers it: a delta against a model the edge holds."""
        held = {v: sha256_hex(data) for v, data in self.edge_models.items()}
        manifest, payload = self.sim.registry.delivery(self.edge_id, version, held)
        self.sim.push(self.downlink.send(t, len(payload)), "deploy", (self.edge_id, manifest, payload))

    def deploy(self, t: float, manifest: ModelManifest, payload: bytes) -> None:
        if manifest.version <= self.deployed.version:
            return
        source = f"{self.edge_id} update v{manifest.version}"
        manifest, weights = decode_update(manifest, payload, self.edge_models.get, source)
        self.edge_models = dict(sorted({**self.edge_models, manifest.version: weights}.items())[-EDGE_KEEPS:])
        self.deployed = StudentModel.from_bytes(manifest, weights, source=source)
        self.deployed_sha = manifest.sha256
        if self.sampler is not None:
            self.sampler.model_updated(manifest.metrics.get("scene_start") or None)
        if isinstance(self.changes, DetectorChanges):
            self.changes.model_swapped()
        self.result.updates.append(
            UpdateResult(
                manifest.version,
                t,
                manifest.trained_until,
                t - manifest.trained_until,
                len(payload),
                zoo_of=int(manifest.metrics.get("zoo_of", 0)),
                chosen_for=manifest.metrics.get("scene_start", 0.0),
            )
        )

    def finish(self) -> StrategyRun:
        self.result.uplink_bytes = self.uplink.bytes_sent
        self.result.downlink_bytes = self.downlink.bytes_sent
        return self.result


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


class Simulation:
    """Runs one strategy over the stream(s); see the module docstring."""

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
        self.worker = TrainingWorker(
            self.store, self.registry, self.training, "bench-worker", workdir=workdir, clock=self.clock
        )
        self._events: list = []
        self._order = itertools.count()
        self._teacher_free_at = 0.0
        self._worker_free_at = 0.0
        self._training_job = False
        self._tokens_spent = 0.0
        self._wanted: dict[str, float] = {}  # job id -> budget it waits for (see _maybe_start_job)
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
        costs = self.knobs.costs
        self._order_queue()
        job = self.store.claim_job("bench-worker", timeout_s=0)
        if job is None:
            return
        self.clock.now = t
        train, held, replay = self.worker.select(job)
        if not self.worker.ready(train, held):  # too few frames of the current scene yet
            self._requeue(job, t + 1.0)
            return
        images = max(1, len(train) + len(replay))
        tokens = self._tokens(t)
        cap = self.knobs.train_share * self.knobs.bank_s
        # how long: a job starts once the budget affords at least half its epochs, then trains as many
        # as the budget affords (up to all); waiting for all of them costs more accuracy than it buys
        least = math.ceil(self.training.epochs / 2)
        wanted = costs.training(images * least, len(held), self.training.imgsz) * costs.gpu_speedup
        # a job waiting for budget keeps the size it had when first claimed: samples that arrive
        # meanwhile join its data but must not make it wait longer (it would chase the stream)
        wanted = min(self._wanted.setdefault(job.job_id, wanted), cap)
        epochs = min(self.training.epochs, costs.epochs_within(tokens, images, len(held), self.training.imgsz))
        if tokens < wanted or epochs < 1:  # wait for the share to accrue, then try again
            self._requeue(job, t + (wanted - tokens) / self.knobs.train_share + 1e-6)
            return
        job = self.worker.run_job(job, max_epochs=epochs)
        image_epochs = job.metrics.get("image_epochs", 0.0)
        duration = costs.training(image_epochs, int(job.metrics.get("heldout_samples", 0)), self.training.imgsz)
        result = self.cameras[job.edge_id].result
        result.train_gpu_s += duration * costs.gpu_speedup
        self._gpu_s_by_edge[job.edge_id] += duration * costs.gpu_speedup
        self._tokens_spent += duration * costs.gpu_speedup
        result.train_iterations += int(
            job.metrics.get("epochs", 0) * math.ceil(images / min(self.training.batch, images))
        )
        job.finished = t + duration
        result.jobs.append(
            {"job_id": job.job_id, "started": t, "finished": t + duration, "version": job.result_version}
            | {k: round(v, 4) for k, v in job.metrics.items()}
        )
        self._worker_free_at = t + duration
        self._training_job = True
        self.push(t + duration, "job_done", job)

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
        return {edge_id: camera.finish() for edge_id, camera in self.cameras.items()}


class _LazyDriftedFrame:
    """The drifted frame, computed on first use (a cached prediction may make it unnecessary)."""

    def __init__(self, drift: DriftApplier, clean: np.ndarray, t: float, index: int) -> None:
        self.args = (drift, clean, t, index)
        self.image: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self.image is None:
            drift, clean, t, index = self.args
            self.image = drift.apply(clean, t, index)
        return self.image
