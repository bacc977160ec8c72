"""What the cloud's work costs in virtual seconds, and the links between edge and cloud.

Defaults were measured on this project's reference machine (2 CPU cores, no GPU) running the
real code: the SSD teacher labels a 768x576 frame in 39 ms, ultralytics trains yolov8n at
320 px at 50 ms per image-epoch (batch 16), the student predicts a frame in 20 ms. A cloud
GPU is modelled by dividing these by ``gpu_speedup`` (stated in every result). Virtual costs
are fixed numbers, so results do not depend on how loaded the machine running the bench is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CostModel:
    """Virtual seconds per unit of cloud work at gpu_speedup 1 (this machine's CPU)."""

    teacher_s_per_frame: float = 0.039
    train_s_per_image_epoch: float = 0.050  # at reference_imgsz; scales with pixel count
    predict_s_per_frame: float = 0.020
    job_overhead_s: float = 2.0  # dataset writing, trainer set-up
    reference_imgsz: int = 320
    gpu_speedup: float = 1.0

    def teacher(self, frames: int) -> float:
        return frames * self.teacher_s_per_frame / self.gpu_speedup

    def training(self, image_epochs: float, heldout_frames: int, imgsz: int, evaluations: int = 0) -> float:
        """Virtual seconds of one job: fine-tuning, validating two models on the held-out frames, and
        the profiler scoring the held-out frames after each of `evaluations` epochs."""
        scale = (imgsz / self.reference_imgsz) ** 2
        validations = 2 + evaluations
        work = (
            image_epochs * self.train_s_per_image_epoch * scale
            + validations * heldout_frames * self.predict_s_per_frame
        )
        return (self.job_overhead_s + work) / self.gpu_speedup

    def epochs_within(self, budget_s: float, images: int, heldout_frames: int, imgsz: int) -> int:
        """How many epochs over images fit in budget_s (seconds at speedup 1), after the fixed costs."""
        fixed = self.job_overhead_s + 2 * heldout_frames * self.predict_s_per_frame
        per_epoch = images * self.train_s_per_image_epoch * (imgsz / self.reference_imgsz) ** 2
        return max(0, int((budget_s - fixed) // per_epoch)) if per_epoch > 0 else 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Link:
    """A first-in first-out link with a bandwidth and a round-trip time, in virtual seconds."""

    kbit_per_s: float
    rtt_s: float
    free_at: float = 0.0
    bytes_sent: int = 0

    def send(self, t: float, nbytes: int) -> float:
        """Queue nbytes at time t; returns when the last byte arrives at the other end."""
        start = max(t, self.free_at)
        self.free_at = start + nbytes * 8 / (self.kbit_per_s * 1000)
        self.bytes_sent += nbytes
        return self.free_at + self.rtt_s / 2

    def send_control(self, t: float, nbytes: int) -> float:
        """A small message on its own RPC: gRPC multiplexes it beside the bulk stream (HTTP/2), so it
        does not wait for queued bulk bytes. Returns its arrival; the bulk queue is not delayed
        (a control message is a few hundred bytes against tens of kilobytes per sample)."""
        self.bytes_sent += nbytes
        return t + nbytes * 8 / (self.kbit_per_s * 1000) + self.rtt_s / 2
