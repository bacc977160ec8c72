"""What the cloud's work costs in virtual seconds, and the links between edge and cloud.

Defaults were measured on this project's reference machine (2 CPU cores, no GPU) running the
real code: the SSD teacher labels a 768x576 frame in 39 ms, ultralytics trains yolov8n at
320 px at 50 ms per image-epoch (batch 16), the student predicts a frame in 20 ms. A cloud
GPU is modelled by dividing these by ``gpu_speedup`` (stated in every result). Virtual costs
are fixed numbers, so results do not depend on how loaded the machine running the bench is.

Distillation (training.distill) adds to each image-epoch, measured with scripts/time_distill.py
(32 vtest.avi frames, 4 epochs, the modes alternating, two rounds, medians) while another
benchmark shared the two cores: off 103.7 ms per image-epoch, attention 177.0 ms (1.71x),
attention+generative 223.4 ms (2.15x); the SSD teacher's features took 76.6 ms per training
image, so attention's extra is almost all the teacher's pass. The run was 2.07x slower than the
reference 50 ms, so the extras are charged as those ratios of it: attention +35 ms,
attention+generative +58 ms per image-epoch. A distilled epoch thus costs 1.7x (2.15x) a plain
one, and at the same training budget a distilled job affords about 0.6x (0.45x) the epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# measured by scripts/time_distill.py (see the module docstring), per image-epoch at speedup 1
DISTILL_ATTENTION_S = 0.035
DISTILL_GENERATIVE_S = 0.058


@dataclass(frozen=True)
class CostModel:
    """Virtual seconds per unit of cloud work at gpu_speedup 1 (this machine's CPU)."""

    teacher_s_per_frame: float = 0.039
    train_s_per_image_epoch: float = 0.050  # at reference_imgsz; scales with pixel count
    predict_s_per_frame: float = 0.020
    job_overhead_s: float = 2.0  # dataset writing, trainer set-up
    reference_imgsz: int = 320
    gpu_speedup: float = 1.0
    # distillation (training.distill), on top of train_s_per_image_epoch: the teacher's features of
    # each training image (SSD at 300 px, whatever the student's size) plus the distiller's modules
    distill_attention_s_per_image_epoch: float = DISTILL_ATTENTION_S
    distill_generative_s_per_image_epoch: float = DISTILL_GENERATIVE_S

    def teacher(self, frames: int) -> float:
        return frames * self.teacher_s_per_frame / self.gpu_speedup

    def distill_s_per_image_epoch(self, mode: str) -> float:
        """Extra seconds per image-epoch of a distillation mode (off: none)."""
        if mode == "off":
            return 0.0
        if mode == "attention":
            return self.distill_attention_s_per_image_epoch
        if mode == "attention+generative":
            return self.distill_generative_s_per_image_epoch
        raise ValueError(f"unknown distillation mode {mode!r}")

    def training(
        self,
        image_epochs: float,
        heldout_frames: int,
        imgsz: int,
        evaluations: int = 0,
        distill: str = "off",
        distilled_image_epochs: float | None = None,
        recalibration_frames: int = 0,
        new_scene_frames: int = 0,
        forward_images: int = 0,
    ) -> float:
        """Virtual seconds of one job: fine-tuning, validating two models on the held-out frames, and
        the profiler scoring the held-out frames after each of `evaluations` epochs. A job whose
        edge changed scene meanwhile also scores two models on `new_scene_frames` of the new scene;
        one judged by its scene's later frames (training.later_jury) on those, counted there too.

        With distillation, each of `distilled_image_epochs` (all of them when None; fewer when a
        warm-up skipped the teacher) costs its extra too. Re-estimating batch-norm statistics
        (training.recalibrate_bn) costs a forward pass per frame it uses and one more validation;
        `forward_images` are other forward passes of training images (training.bn_follows_steps)."""
        scale = (imgsz / self.reference_imgsz) ** 2
        validations = 2 + evaluations + (1 if recalibration_frames else 0)
        distilled = image_epochs if distilled_image_epochs is None else distilled_image_epochs
        work = (
            image_epochs * self.train_s_per_image_epoch * scale
            + distilled * self.distill_s_per_image_epoch(distill)
            + validations * heldout_frames * self.predict_s_per_frame
            + (recalibration_frames + forward_images) * self.predict_s_per_frame
            + 2 * new_scene_frames * self.predict_s_per_frame
        )
        return (self.job_overhead_s + work) / self.gpu_speedup

    def epochs_within(
        self,
        budget_s: float,
        images: int,
        heldout_frames: int,
        imgsz: int,
        distill: str = "off",
        recalibration_frames: int = 0,
    ) -> int:
        """How many epochs over images fit in budget_s (seconds at speedup 1), after the fixed costs;
        a distilled epoch is charged in full (an upper bound when a warm-up skips the teacher)."""
        fixed = self.training(0, heldout_frames, imgsz, recalibration_frames=recalibration_frames) * self.gpu_speedup
        per_image = self.train_s_per_image_epoch * (imgsz / self.reference_imgsz) ** 2
        per_epoch = images * (per_image + self.distill_s_per_image_epoch(distill))
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
