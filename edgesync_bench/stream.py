"""The benchmark's plain values: the stream(s) and budgets every strategy shares, and what a run produced."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgesync.config import DownlinkConfig, SamplerConfig, TrainingConfig
from edgesync.drift import DriftSchedule
from edgesync.types import ModelManifest
from edgesync_bench.costs import CostModel

EDGE_ID = "bench-cam"  # the single camera's edge id


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
    bootstrap_frames: int = 0  # video frames 0 to this (exclusive) trained the student: never scored

    def scored(self, t: float, video_index: int) -> bool:
        """Whether the bench scores the frame shown at stream time t (video frame video_index)."""
        return t >= self.eval_from_s and video_index >= self.bootstrap_frames

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
    audit_samples: int = 0  # of those, drawn at random for validation (sampler.audit_share)
    jobs: list[dict] = field(default_factory=list)
    train_iterations: int = 0
    train_gpu_s: float = 0.0  # at speedup 1
    scene_changes: list[float] = field(default_factory=list)  # stream times the edge noticed a change
