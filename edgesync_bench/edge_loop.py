"""`edgesync bench edge`: what the edge agent's frame loop costs over a bare detector loop.

Three kinds of pass over the same first N frames of a video, interleaved and repeated so
machine noise hits them alike (medians are reported):

- bare: cv2 decode + StudentModel.predict, nothing else;
- agent: the agent's own frame step (EdgeAgent.step: swap check, detect, sample, queue to
  the disk-journalled spool, sink) over VideoSource with realtime off, which decodes
  source.read_ahead frames ahead on its reader thread as the agent's does. EdgeAgent.run is not
  used because it needs a cloud to register with; its uploader, heartbeats and listener
  threads are idle while the cloud is away, so the loop is what they would leave on the CPU;
- swap: the agent pass while a background thread receives model updates every N frames
  through the real UpdateListener.handle (verify and load with StudentModel.from_bytes into
  one of the spares the agent stocks at start, or build and warm one when it has none, save to
  the edge's model store, offer), so swaps and the loading that precedes them compete with
  the loop as they do on a device.

Per-frame latency is the loop body after the frame is decoded (swap check, detect, sample,
queue, sink): steady from the agent passes, "swap" from the swap passes.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import queue
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.table import Table

from edge_agent.agent import EdgeAgent
from edge_agent.hotswap import HotSwapDetector
from edge_agent.model_store import EdgeModelStore
from edge_agent.sink import JsonlSink
from edge_agent.source import VideoSource, open_capture
from edge_agent.updates import UpdateListener, yield_to_frame_loop
from edgesync.assets import resolve_video
from edgesync.config import EdgeConfig, QueueConfig, RetryConfig, SamplerConfig, SourceConfig, StudentConfig
from edgesync.errors import AssetError, InvalidInput, SourceError
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.types import ModelManifest, check_preprocess

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ["person", "car"]
EDGE_ID = "bench-edge"
WARMUP_FRAMES = 10
MAX_SWAP_WAIT_S = 120.0  # a pass with swaps stops this long after its own frames, swapped or not


@dataclass
class _Pass:
    """One timed pass: how many frames, how long, and each frame's loop-body latency."""

    frames: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    swaps: int = 0
    swap_frame_ms: list[float] = field(default_factory=list)
    samples_queued: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def load_student(path: Path | None, imgsz: int) -> StudentModel:
    """The student to time: path (.safetensors with its manifest, or an ultralytics .pt), else a
    fresh yolov8n with random weights (same compute as a trained one) at imgsz, version 1."""
    if path is None:
        return StudentModel.fresh(DEFAULT_CLASSES, imgsz, version=1)
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"student weights not found: {path}")
    if path.suffix == ".pt":
        return StudentModel.from_pt(path, imgsz=imgsz, version=1)
    return load_safetensors_model(path)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def machine_info() -> dict:
    """What the numbers depend on: cores, torch threads, library versions, load at the start."""

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": pkg("ultralytics"),
        "opencv": cv2.__version__,
    }


def _bare_pass(video: str, model: StudentModel, frames: int) -> _Pass:
    """cv2 decode + StudentModel.predict over the first frames of video (a model that sees frames
    as they come: ultralytics' predict and nothing else)."""
    capture = open_capture(video)
    latencies: list[float] = []
    try:
        started = time.perf_counter()
        while len(latencies) < frames:
            ok, image = capture.read()
            if not ok or image is None:
                break
            start = time.perf_counter()
            model.predict([image])
            latencies.append((time.perf_counter() - start) * 1000)
        seconds = time.perf_counter() - started
    finally:
        capture.release()
    if not latencies:
        raise SourceError(f"video source {video!r} has no readable frames")
    return _Pass(len(latencies), seconds, latencies)


class _UpdateFeeder:
    """A background thread that hands model updates to the real UpdateListener.handle on request."""

    def __init__(self, detector: HotSwapDetector, data: bytes, manifests: list[ModelManifest], store_dir: Path):
        # handle() verifies, stores, warms and stages a model; it never touches the network,
        # so the listener needs no stub (its subscription loop is not run here).
        self.listener = UpdateListener(
            None,  # type: ignore[arg-type]
            EDGE_ID,
            lambda: detector,
            EdgeModelStore(store_dir),
            RetryConfig(),
            {},
            have_version=lambda: detector.version,
        )
        self.data = data
        self.manifests = list(manifests)
        self.requests: queue.Queue[ModelManifest | None] = queue.Queue()
        self.busy = threading.Event()  # an update is being loaded
        self.staged = 0  # updates verified, warmed and offered to the detector
        self.thread = threading.Thread(target=self._run, name="bench-updates", daemon=True)
        self.thread.start()

    def ready(self) -> bool:
        """Whether another update can be delivered now (one left, none still loading)."""
        return bool(self.manifests) and not self.busy.is_set()

    def settled(self, swaps: int) -> bool:
        """Whether every update was delivered, loaded and (if it verified) swapped in."""
        return not self.manifests and not self.busy.is_set() and swaps >= self.staged

    def request(self) -> None:
        """Deliver the next update (as if it had just arrived from the cloud)."""
        self.busy.set()
        self.requests.put(self.manifests.pop(0))

    def _run(self) -> None:
        yield_to_frame_loop()  # as the agent's listener thread does
        while (manifest := self.requests.get()) is not None:
            try:
                if self.listener.handle(manifest, self.data) is not None:
                    self.staged += 1
            finally:
                self.busy.clear()

    def close(self) -> None:
        self.requests.put(None)
        self.thread.join()


def _agent_pass(
    video: str,
    model: StudentModel,
    frames: int,
    workdir: Path,
    sampler_cfg: SamplerConfig,
    student_cfg: StudentConfig,
    source_cfg: SourceConfig,
    updates: tuple[bytes, list[ModelManifest]] | None = None,
) -> _Pass:
    """EdgeAgent.step over the first frames of video.

    With updates, the next model update is delivered every frames / (updates + 1) frames, or
    later if the previous one is still loading; the delivery itself is outside the timed loop
    body, the loading and warm-up on the feeder thread compete with it. So that every update
    is swapped in however slow loading is, such a pass goes on past `frames` (replaying the
    video if need be) until the last one is, for at most MAX_SWAP_WAIT_S: loading takes seconds
    whatever the frame rate, so a bound in frames would be too short for a tiny, fast student.
    """
    workdir.mkdir(parents=True)
    cfg = EdgeConfig(
        edge_id=EDGE_ID,
        sampler=sampler_cfg,
        student=student_cfg,
        queue=QueueConfig(spill_dir=workdir / "spool"),
        model_dir=workdir / "models",
        sink=None,
    )
    agent = EdgeAgent(cfg)  # never run(): no cloud, so only its frame step is used
    current = model.copy()  # updates may be loaded into it once it is retired: model stays as it is
    current.warmup()
    agent.adopt(current)  # as run() does: serve it, with the spares updates are loaded into
    detector = agent.detector
    source = VideoSource(
        video,
        realtime=False,
        loop=updates is not None,
        max_frames=None if updates is not None else frames,
        read_ahead=source_cfg.read_ahead,
        prepare=agent.prepare,
    )
    sink = JsonlSink(workdir / "frames.jsonl")
    feeder = None
    every = next_update = frames
    result = _Pass(0, 0.0)
    overtime_from: float | None = None  # when the pass ran past its frames, waiting for a swap

    try:
        if updates is not None:
            data, manifests = updates
            feeder = _UpdateFeeder(detector, data, manifests, workdir / "models")
            every = next_update = max(1, frames // (len(manifests) + 1))
        started = time.perf_counter()
        for frame in source:
            if feeder is not None and frame.index >= next_update and feeder.ready():
                feeder.request()
                next_update = frame.index + every
            start = time.perf_counter()
            event = agent.step(frame, sink)
            body_ms = (time.perf_counter() - start) * 1000
            result.latencies_ms.append(body_ms)
            if event is not None:
                result.swaps += 1
                result.swap_frame_ms.append(round(body_ms, 2))
            if frame.index + 1 >= frames:
                if feeder is None or feeder.settled(result.swaps):
                    break
                overtime_from = overtime_from or time.perf_counter()
                if time.perf_counter() - overtime_from > MAX_SWAP_WAIT_S:
                    log.warning(
                        "gave up waiting for model updates after %.0f s past %d frames", MAX_SWAP_WAIT_S, frames
                    )
                    break
        result.seconds = time.perf_counter() - started
        result.frames = len(result.latencies_ms)
        agent.finish_stream()  # end of stream, as the agent does (untimed)
        result.samples_queued = agent.stats.samples_accepted
    finally:
        if feeder is not None:
            feeder.close()
        sink.close()
        source.close()
        agent.spool.close()
        agent.channel.close()
    return result


def run_edge_bench(
    video: str = "vtest.avi",
    frames: int = 300,
    swaps: int = 3,
    student: Path | None = None,
    imgsz: int = 320,
    repeats: int = 2,
    sampler: SamplerConfig | None = None,
    out: Path | None = None,
    preprocess: str | None = None,
    spares: int | None = None,
    read_ahead: int | None = None,
) -> dict:
    """Time the agent's frame loop against a bare predict loop, and latency with and without swaps.

    Each repeat runs bare, agent and swap passes in turn over the same first `frames` frames;
    fps are medians over repeats, latency percentiles pool every pass of a kind. imgsz applies
    to a fresh or .pt student (a .safetensors one keeps its manifest's). preprocess is how the
    agent's model sees frames (edgesync.preprocess; None: as the student's manifest says, none for
    a fresh or .pt one); the bare loop always predicts on frames as they come, so the agent's side
    pays for any preprocessing. spares is the agent's student.spares, read_ahead its
    source.read_ahead (None: their defaults). With out, writes out/edge.json. Returns the same dict.
    """
    if frames < 1 or repeats < 1 or swaps < 0:
        raise InvalidInput(f"frames ({frames}) and repeats ({repeats}) must be positive, swaps ({swaps}) >= 0")
    started = time.monotonic()
    machine = machine_info()
    path = resolve_video(video)
    sampler_cfg = sampler or SamplerConfig()
    student_cfg = StudentConfig() if spares is None else StudentConfig(spares=spares)
    source_cfg = SourceConfig() if read_ahead is None else SourceConfig(read_ahead=read_ahead)
    model = load_student(student, imgsz)
    if preprocess is not None:
        model = model.with_preprocess(check_preprocess(preprocess))
    bare_model = model if model.preprocess == "none" else model.with_preprocess("none")
    data, _ = model.encode()
    manifests = [model.manifest(data, version=model.version + k + 1) for k in range(swaps)]
    for warm in {id(m): m for m in (model, bare_model)}.values():
        warm.warmup()
        _bare_pass(path, warm, min(frames, WARMUP_FRAMES))  # decoder and predictor warm, file cached

    bare: list[_Pass] = []
    agent: list[_Pass] = []
    swapped: list[_Pass] = []
    with tempfile.TemporaryDirectory(prefix="edgesync-bench-edge-") as tmp:
        for r in range(repeats):
            bare.append(_bare_pass(path, bare_model, frames))
            agent.append(
                _agent_pass(path, model, frames, Path(tmp) / f"agent-{r}", sampler_cfg, student_cfg, source_cfg)
            )
            swapped.append(
                _agent_pass(
                    path,
                    model,
                    frames,
                    Path(tmp) / f"swap-{r}",
                    sampler_cfg,
                    student_cfg,
                    source_cfg,
                    updates=(data, manifests),
                )
            )
            log.info(
                "repeat %d/%d: bare %.1f fps, agent %.1f fps, with swaps %.1f fps (%d swaps)",
                r + 1,
                repeats,
                bare[-1].fps,
                agent[-1].fps,
                swapped[-1].fps,
                swapped[-1].swaps,
            )

    bare_fps = statistics.median(p.fps for p in bare)
    agent_fps = statistics.median(p.fps for p in agent)
    steady = [ms for p in agent for ms in p.latencies_ms]
    during = [ms for p in swapped for ms in p.latencies_ms]
    result = {
        "video": str(video),
        "frames": agent[0].frames,
        "repeats": repeats,
        "imgsz": model.imgsz,
        "arch": model.arch,
        "preprocess": model.preprocess,  # the agent's; the bare loop's is none
        "student": str(student) if student is not None else "fresh (random weights)",
        "sampler": sampler_cfg.type,
        "spares": student_cfg.spares,
        "read_ahead": source_cfg.read_ahead,
        "bare_fps": round(bare_fps, 2),
        "agent_fps": round(agent_fps, 2),
        "ratio": round(agent_fps / bare_fps, 3) if bare_fps > 0 else 0.0,
        "swap_fps": round(statistics.median(p.fps for p in swapped), 2),
        "bare_fps_runs": [round(p.fps, 2) for p in bare],
        "agent_fps_runs": [round(p.fps, 2) for p in agent],
        "p50_ms_bare": _percentile([ms for p in bare for ms in p.latencies_ms], 50),
        "p99_ms_bare": _percentile([ms for p in bare for ms in p.latencies_ms], 99),
        "p50_ms_steady": _percentile(steady, 50),
        "p99_ms_steady": _percentile(steady, 99),
        "max_ms_steady": _percentile(steady, 100),
        "p50_ms_swap": _percentile(during, 50),
        "p99_ms_swap": _percentile(during, 99),
        "max_ms_swap": _percentile(during, 100),
        "swap_pass_frames": [p.frames for p in swapped],
        "swaps": sum(p.swaps for p in swapped),
        "swaps_requested": swaps * repeats,
        "swap_frame_ms": [ms for p in swapped for ms in p.swap_frame_ms],
        "samples_queued": sum(p.samples_queued for p in agent),
        "machine": machine,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "edge.json").write_text(json.dumps(result, indent=2))
    return result


def summary_table(result: dict) -> Table:
    """A short table of a run_edge_bench result, for the terminal."""
    m = result["machine"]
    table = Table(
        title=f"edge frame loop: {result['frames']} frames at {result['imgsz']} px, "
        f"{m['cpu_count']} CPUs, {m['torch_threads']} torch threads"
        + (f"; the agent's model sees frames {result['preprocess']}" if result["preprocess"] != "none" else ""),
        title_justify="left",
    )
    for name in ("", "fps", "p50 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if not name else "right")
    table.add_row(
        "bare predict", f"{result['bare_fps']:.1f}", f"{result['p50_ms_bare']:.1f}", f"{result['p99_ms_bare']:.1f}", ""
    )
    table.add_row(
        "agent loop",
        f"{result['agent_fps']:.1f}",
        f"{result['p50_ms_steady']:.1f}",
        f"{result['p99_ms_steady']:.1f}",
        f"{result['max_ms_steady']:.1f}",
    )
    table.add_row(
        f"agent, {result['swaps']}/{result['swaps_requested']} swaps, {result['spares']} spares",
        f"{result['swap_fps']:.1f}",
        f"{result['p50_ms_swap']:.1f}",
        f"{result['p99_ms_swap']:.1f}",
        f"{result['max_ms_swap']:.1f}",
    )
    table.caption = f"agent / bare fps: {result['ratio']:.2f} (medians of {result['repeats']} interleaved repeats)"
    return table
