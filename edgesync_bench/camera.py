"""One simulated edge of the benchmark: the real student, sampler and change-point detector on the
camera's drifted frames, with its own links to the shared cloud (edgesync_bench.simulation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from cloud_trainer.scenes import SceneChangeHandler
from cloud_trainer.zoo import ModelZoo
from edgesync.config import ChangePointConfig
from edgesync.delta import decode_update
from edgesync.drift import DriftApplier
from edgesync.sampling import FrameInfo, build_sampler
from edgesync.student import Prediction, StudentModel
from edgesync.types import EdgeInfo, ModelManifest, SceneChange, detections_to_array
from edgesync.weights import sha256_hex
from edgesync_bench.costs import Link
from edgesync_bench.scene_changes import (
    DetectorChanges,
    Noticed,
    OracleChanges,
    SceneChanges,
)
from edgesync_bench.strategies import Trigger
from edgesync_bench.stream import CameraSetup, FrameResult, StrategyRun, UpdateResult

if TYPE_CHECKING:
    from edgesync_bench.simulation import Simulation

EDGE_KEEPS = 3  # models the edge keeps (EdgeModelStore's default)
SCENE_CHANGE_BYTES = 64  # a scene-change report without its signatures (8 bytes per signature value)


class Camera:
    """One simulated edge: drift, student, sampler, change points, links, and what it saw."""

    def __init__(self, sim: Simulation, cam: CameraSetup) -> None:
        strategy, setup, knobs = sim.strategy, sim.setup, sim.knobs
        self.sim = sim
        self.setup = cam
        self.edge_id = cam.edge_id
        # the bootstrapped student, seeing frames as the strategy says from the start
        base_manifest = replace(setup.base_manifest, preprocess=strategy.preprocess)
        sim.registry.register(cam.edge_id, setup.base_weights, base_manifest)
        names = list(base_manifest.class_names)
        sim.store.upsert_edge(EdgeInfo(edge_id=cam.edge_id, class_names=names, model_version=1))
        sim.store.set_meta(cam.edge_id, first_seen=0.0, last_model_time=0.0)
        self.trigger: Trigger | None = None
        if strategy.trigger is not None:
            self.trigger = strategy.trigger(sim.store, sim.registry, cam.edge_id, sim.clock)
        sampler_cfg = knobs.sampler.model_copy(
            update={"type": strategy.sampler or knobs.sampler.type, **strategy.sampler_options}
        )
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
                zoo = ModelZoo(sim.registry, view=sim.training.preprocess[0]) if manager.cfg.zoo else None
                self.scenes = SceneChangeHandler(sim.store, manager, zoo)
        self.uplink = Link(knobs.uplink_kbit_s, knobs.rtt_s)
        self.downlink = Link(knobs.downlink_kbit_s, knobs.rtt_s)
        self.deployed = StudentModel.from_bytes(base_manifest, setup.base_weights, source="base model")
        self.deployed_key = base_manifest.model_key
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
        if setup.scored(t, video_index):
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
        cached = predictions.get(self.deployed_key, self.edge_id, index)
        if cached is None:
            cached = self.deployed.predict([image()])[0]
            predictions.put(self.deployed_key, self.edge_id, index, cached)
        return cached

    def _send(self, selected, t: float) -> None:
        info = selected.info
        sample = selected.to_sample(f"s{info.frame_index:07d}", self.edge_id, self.deployed.version)
        arrival = self.uplink.send(max(t, selected.released_s), selected.nbytes)
        self.result.samples += 1
        self.result.audit_samples += sample.audit
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
        report = SCENE_CHANGE_BYTES + 8 * (len(noticed.signature) + len(noticed.previous_signature))
        # ReportSceneChange is its own RPC: it does not queue behind the upload stream's samples
        self.sim.push(self.uplink.send_control(t, report), "scene_change", change)

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
        self.deployed_key = manifest.model_key
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
