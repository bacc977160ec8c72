"""The edge agent: capture -> detect -> sample -> queue, with upload, heartbeats and hot swap beside it.

The frame loop never waits on the network: uploads, heartbeats and model downloads run on
their own threads, talk to the loop through the spool and the hot-swap slot, and retry with
backoff while the cloud is away.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from edge_agent.hotswap import HotSwapDetector, SwapEvent
from edge_agent.metrics import EdgeMetrics
from edge_agent.model_store import EdgeModelStore
from edge_agent.scene_reports import SceneReporter
from edge_agent.sink import JsonlSink
from edge_agent.source import Frame, VideoSource
from edge_agent.spool import SampleSpool
from edge_agent.swap_guard import SwapGuard
from edge_agent.updates import UpdateListener
from edge_agent.uploader import Uploader
from edgesync.assets import resolve_video
from edgesync.changepoint import Cadence, ChangePoint, SceneWatcher, image_statistics
from edgesync.config import EdgeConfig
from edgesync.credentials import EdgeCredentials
from edgesync.drift import load_schedule
from edgesync.errors import AssetError
from edgesync.preprocess import preprocessed
from edgesync.retry import Backoff
from edgesync.sampling import FrameInfo, Selected, build_sampler
from edgesync.signing import ManifestVerifier
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.tls import read_pem
from edgesync.types import ModelManifest, SceneChange
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

CONFIDENCE_EMA = 0.05  # weight of the newest frame in the live confidence proxy


@dataclass
class EdgeStats:
    """What the agent reports in heartbeats and at exit."""

    frames: int = 0
    samples_accepted: int = 0
    samples_refused: int = 0
    swaps: int = 0
    rollbacks: int = 0  # models the edge rolled back on its own (edge_agent.swap_guard)
    scene_changes: int = 0
    confidence_proxy: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class EdgeAgent:
    """Runs one camera's frame loop against one cloud."""

    def __init__(self, cfg: EdgeConfig, channel: grpc.Channel | None = None) -> None:
        self.cfg = cfg
        limit = cfg.limits.max_message_bytes
        options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        if channel is not None:
            self.channel = channel
        elif cfg.cloud.tls_ca is not None:  # TLS, checking the cloud's certificate against this CA
            trust = grpc.ssl_channel_credentials(root_certificates=read_pem(cfg.cloud.tls_ca, "cloud CA certificate"))
            self.channel = grpc.secure_channel(cfg.cloud.address, trust, options=options)
        else:
            self.channel = grpc.insecure_channel(cfg.cloud.address, options=options)
        calls = self.channel
        if cfg.cloud.token:  # every call carries the edge's id and token
            calls = grpc.intercept_channel(self.channel, EdgeCredentials(cfg.edge_id, cfg.cloud.token))
        self.stub = pb_grpc.EdgeSyncStub(calls)
        self.spool = SampleSpool.from_config(cfg.queue)
        self.sampler = build_sampler(cfg.sampler)
        self.scenes = SceneWatcher(cfg.changepoint) if cfg.changepoint.enabled else None
        # picks, on the source's reader thread, the frames the watcher will look at (prepare)
        self._scenes_ahead = Cadence(cfg.changepoint.sample_hz) if self.scenes is not None else None
        self.model_store = EdgeModelStore(Path(cfg.model_dir) / cfg.edge_id)
        key = cfg.security.verify_key
        self.verifier = ManifestVerifier(key) if key is not None else None  # a bad key fails here, at start
        self.model_kwargs = {"conf": cfg.student.conf, "iou": cfg.student.iou, "device": cfg.student.device}
        self.detector: HotSwapDetector | None = None
        self.stats = EdgeStats()
        self.metrics = EdgeMetrics(self)
        rb = cfg.rollback
        self.guard = SwapGuard(rb.window_frames, rb.collapse_ratio, rb.min_confidence) if rb.enabled else None
        self._run_id = int(time.time() * 1000)  # makes sample ids unique across restarts
        self._stream_origin = 0.0  # wall clock at stream time 0
        self.registered = threading.Event()
        self._first_model = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.uploader = Uploader(self.stub, self.spool, cfg.cloud.retry)
        self.scene_reporter = SceneReporter(self.stub, cfg.cloud.retry, cfg.cloud.timeout_s)
        self.listener = UpdateListener(
            self.stub,
            cfg.edge_id,
            lambda: self.detector,
            self.model_store,
            cfg.cloud.retry,
            self.model_kwargs,
            have_version=lambda: self.detector.version if self.detector else 0,
            on_first_model=self._adopt_first_model,
            verifier=self.verifier,
        )

    # ------------------------------------------------------------ model

    def load_initial_model(self) -> StudentModel | None:
        """The configured weights, else the newest model received before a restart, else None."""
        weights = self.cfg.student.weights
        if weights is not None:
            if not Path(weights).is_file():
                raise AssetError(f"student weights not found: {weights}")
            if Path(weights).suffix == ".pt":
                return StudentModel.from_pt(Path(weights), imgsz=320, **self.model_kwargs)
            return load_safetensors_model(Path(weights), **self.model_kwargs)
        return self.model_store.load_newest(self.verifier, **self.model_kwargs)

    def _adopt_first_model(self, model: StudentModel, manifest: ModelManifest, size: int) -> None:
        self.adopt(model)
        self._first_model.set()

    def adopt(self, model: StudentModel) -> None:
        """Serve model from now on, with the spares later updates are loaded into (before any frame)."""
        detector = HotSwapDetector(model)
        detector.stock_spares(self.cfg.student.spares)
        self.detector = detector

    # ------------------------------------------------------------ background threads

    def _link(self, stop: threading.Event) -> None:
        """Register (retrying until the cloud answers), then send heartbeats."""
        backoff = Backoff(self.cfg.cloud.retry)
        timeout = self.cfg.cloud.timeout_s
        while not stop.is_set() and not self.registered.is_set():
            try:
                names = self.detector.current.class_names if self.detector else []
                reply = self.stub.Register(
                    pb.RegisterRequest(
                        edge_id=self.cfg.edge_id,
                        model_version=self.detector.version if self.detector else 0,
                        class_names=names,
                        description=socket.gethostname(),
                    ),
                    timeout=timeout,
                )
                self.registered.set()
                log.info("registered with %s; cloud holds v%d", self.cfg.cloud.address, reply.latest_model_version)
            except grpc.RpcError as exc:
                log.warning("cannot register with %s (%s); retrying", self.cfg.cloud.address, exc.code())
                backoff.wait(stop)
        self._spawn("uploader", self.uploader.run)
        self._spawn("scene-reports", self.scene_reporter.run)
        self._spawn("updates", self.listener.run)
        while not stop.wait(self.cfg.cloud.heartbeat_s):
            try:
                self.stub.Heartbeat(self._heartbeat(), timeout=timeout)
            except grpc.RpcError as exc:
                log.debug("heartbeat failed: %s", exc.code())

    def _heartbeat(self) -> pb.HeartbeatRequest:
        return pb.HeartbeatRequest(
            edge_id=self.cfg.edge_id,
            model_version=self.detector.version if self.detector else 0,
            frames=self.stats.frames,
            queue_depth=self.spool.depth,
            confidence_proxy=self.stats.confidence_proxy,
            uplink_bytes=self.uploader.sent_bytes,
            downlink_bytes=self.listener.received_bytes,
        )

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------ frame loop

    def _enqueue(self, selected: Selected, frame_version: int) -> None:
        info = selected.info
        sample = selected.to_sample(
            sample_id=f"{self.cfg.edge_id}-{self._run_id}-{info.frame_index}",
            edge_id=self.cfg.edge_id,
            model_version=frame_version,
            origin_s=self._stream_origin,  # the sampler may release an earlier frame
        )
        if self.spool.put(sample):
            self.stats.samples_accepted += 1
        else:
            self.stats.samples_refused += 1

    def run(self, model_wait_s: float = 300.0, drain_s: float = 0.0) -> EdgeStats:
        """Process the source to its end (or until stop()); returns the run's statistics."""
        source_cfg = self.cfg.source
        schedule = load_schedule(source_cfg.drift) if source_cfg.drift else None
        source = VideoSource(
            resolve_video(source_cfg.uri),
            schedule=schedule,
            seed=source_cfg.seed,
            realtime=source_cfg.realtime,
            loop=source_cfg.loop,
            max_frames=source_cfg.max_frames,
            fps=source_cfg.fps,
            read_ahead=source_cfg.read_ahead,
            prepare=self.prepare,
        )
        if self.cfg.metrics_listen:
            self.metrics.serve(self.cfg.metrics_listen)
        initial = self.load_initial_model()
        if initial is not None:
            initial.warmup()
            self.adopt(initial)
        self._spawn("link", self._link)
        if self.detector is None:
            log.info("no local model: waiting up to %.0f s for the cloud to send one", model_wait_s)
            if not self._first_model.wait(model_wait_s):
                self.stop()
                raise AssetError(
                    f"edge {self.cfg.edge_id} has no model: set student.weights, or run `edgesync bootstrap` "
                    f"so the cloud at {self.cfg.cloud.address} can send one"
                )
        sink = JsonlSink(self.cfg.sink)
        try:
            for frame in source:
                if self._stop.is_set():
                    break
                self.step(frame, sink)
            self.finish_stream()
            deadline = time.monotonic() + drain_s
            while self.spool.depth and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sink.close()
            source.close()
            self.stop()
        return self.stats

    def prepare(self, frame: Frame) -> None:
        """The frame's work that needs no prediction, done ahead of the loop on the source's reader
        thread (VideoSource's prepare hook): the frame as the current model sees it (auto levels),
        and the change-point image statistics if the watcher will look at it. step() does what is
        missing itself: a model swapped in meanwhile with another preprocessing levels its frames."""
        detector = self.detector
        mode = detector.current.preprocess if detector is not None else "none"
        if mode != "none":
            frame.views[mode] = preprocessed([frame.image], mode)[0]
        if self._scenes_ahead is not None and self._scenes_ahead.take(frame.t_s):
            frame.statistics = image_statistics(frame.image)

    def step(self, frame: Frame, sink: JsonlSink) -> SwapEvent | None:
        """One turn of the frame loop: swap in a staged model, detect, sample, queue, record.

        Returns the swap that happened before this frame, if any. Needs a model (self.detector).
        """
        assert self.detector is not None
        event = self.detector.swap_if_ready()
        if event is not None:
            self.stats.swaps += 1
            self.metrics.update_delay.observe(event.update_delay_s)
            if self.guard is not None:
                self.guard.swapped(event.version)
            sink.swap(event, frame.t_s, frame.index)
            # a model chosen for the current scene ends that scene's novelty in the sampler
            self.sampler.model_updated(event.scene_start - self._stream_origin if event.scene_start else None)
            if self.scenes is not None:
                self.scenes.model_swapped()
        start = time.perf_counter()
        prediction = self.detector.predict(frame.image, frame.views)
        latency_ms = (time.perf_counter() - start) * 1000
        self.metrics.inference.observe(latency_ms / 1000)
        version = self.detector.version
        self._stream_origin = frame.capture_time - frame.t_s
        if self.scenes is not None:
            point = self.scenes.watch(frame.t_s, frame.image, prediction.scores, frame.statistics)
            if point is not None:
                self._scene_changed(point, version, sink)
        info = FrameInfo(frame.t_s, frame.index, prediction.scores, tuple(prediction.detections))
        for selected in self.sampler.offer(info, frame.image):
            self._enqueue(selected, version)
        sure = [d.score for d in prediction.detections]
        mean_conf = sum(sure) / len(sure) if sure else 0.0
        if self.guard is not None and (collapse := self.guard.observe(mean_conf)) is not None:
            now_version = self.detector.rollback()
            self.stats.rollbacks += 1
            sink.rollback(collapse, now_version, frame.t_s, frame.index)
            log.warning(
                "model v%d collapsed on this camera (mean confidence %.3f against %.3f before it): back to v%d",
                collapse.version, collapse.after, collapse.before, now_version,
            )  # fmt: skip
        self.stats.confidence_proxy += CONFIDENCE_EMA * (mean_conf - self.stats.confidence_proxy)
        self.stats.frames += 1
        self.stats.latencies_ms.append(latency_ms)
        sink.frame(frame, version, latency_ms, prediction.detections)
        return event

    def _scene_changed(self, point: ChangePoint, version: int, sink: JsonlSink) -> None:
        """Older queued frames go stale, the new scene is sampled hard, and the cloud is told."""
        previous = self.sampler.scene_change_s
        self.sampler.mark_scene_change(point.t_s)
        self.stats.scene_changes += 1
        sink.scene_change(point, version)
        self.scene_reporter.report(
            SceneChange(
                edge_id=self.cfg.edge_id,
                time=self._stream_origin + point.t_s,
                previous_scene_start=0.0 if previous is None else self._stream_origin + previous,
                previous_signature=point.previous_signature,
                signature=point.signature,
                model_version=version,
                confidence=point.confidence,
            )
        )
        log.info(
            "scene change at t=%.1f s (confidence %.2f): older frames are stale; uploading at %gx the budget for %g s",
            point.t_s, point.confidence, self.cfg.sampler.burst_factor, self.cfg.sampler.burst_s,
        )  # fmt: skip

    def finish_stream(self) -> None:
        """At the end of the stream, queue what the sampler still holds."""
        assert self.detector is not None
        for selected in self.sampler.flush(float("inf")):
            self._enqueue(selected, self.detector.version)

    def stop(self) -> None:
        """Stop the loop and background threads."""
        self._stop.set()
        self.listener.close()
        self.metrics.close()
        for thread in self._threads:
            thread.join(timeout=2.0)
