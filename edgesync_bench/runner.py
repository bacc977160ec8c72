"""`edgesync bench`: set up the stream once, run each strategy, write the results."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_trainer.bootstrap import BootstrapSettings, bootstrap_student
from cloud_trainer.registry import ModelRegistry
from edgesync.assets import edgesync_home, resolve_video
from edgesync.config import CloudConfig, SamplerConfig
from edgesync.drift import DriftSchedule, load_schedule
from edgesync.errors import ConfigError
from edgesync.ground_truth import clean_ground_truth, read_video
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.teachers import Teacher, build_teacher
from edgesync_bench.cameras import combine, load_cameras
from edgesync_bench.cameras import markdown_table as cameras_table
from edgesync_bench.cameras import plot as cameras_plot
from edgesync_bench.costs import CostModel
from edgesync_bench.metrics import summarise
from edgesync_bench.report import write_report
from edgesync_bench.simulation import CachingTeacher, PredictionCache, Simulation
from edgesync_bench.strategies import get_strategies
from edgesync_bench.stream import BenchKnobs, CameraSetup, StreamSetup

log = logging.getLogger(__name__)
console = Console(stderr=True)


@dataclass
class BenchRequest:
    """What `edgesync bench` was asked to do."""

    video: str
    drift: Path
    strategies: list[str]
    seed: int = 0
    out: Path = Path("runs/bench")
    student: Path | None = None
    cloud: CloudConfig | None = None  # teacher and training recipe; defaults when None
    gpu_speedup: float = 1.0
    uplink_kbit_s: float = 2000.0
    downlink_kbit_s: float = 10000.0
    rtt_ms: float = 50.0
    train_budget_share: float = 0.4  # GPU-seconds (at speedup 1) per stream second
    max_samples_per_s: float = 1.0
    max_bytes_per_s: float = 60_000.0
    max_side: int = 640  # uploads are downscaled to this longest side
    window_s: float = 10.0
    max_seconds: float | None = None  # stop the stream early (tests)
    bootstrap: BootstrapSettings | None = None
    cache_dir: Path | None = None
    cameras: Path | None = None  # a cameras file: several cameras sharing one cloud (replaces drift)


def _bootstrap_key(video: str, settings: BootstrapSettings, teacher_name: str, classes: list[str]) -> str:
    stat = Path(video).stat()
    text = f"{Path(video).resolve()}:{stat.st_size}:{settings}:{teacher_name}:{classes}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_student(path: Path) -> tuple:
    if path.suffix == ".pt":
        model = StudentModel.from_pt(path, imgsz=320, version=1)
    else:
        model = load_safetensors_model(path)
    data, _ = model.encode()
    return model.manifest(data, version=1), data


def _first_clean_seconds(schedule: DriftSchedule) -> float:
    first = schedule.segments[0]
    if first.label != "clean":
        raise ConfigError(
            "the drift schedule must start with a clean segment to bootstrap the student on "
            f"(it starts with {first.label!r}); or pass --student"
        )
    return first.until_s


def bench_student(
    video: str,
    schedule: DriftSchedule,
    student: Path | None,
    teacher,
    cloud: CloudConfig,
    cache_dir: Path,
    bootstrap: BootstrapSettings | None = None,
    bootstrap_s: float | None = None,
) -> tuple:
    """(manifest, weights, seconds not to score): the given student, or one bootstrapped (and
    cached by video and settings) on the first bootstrap_s seconds of the clean video (default:
    the schedule's first segment, which must be clean)."""
    if student is not None:
        manifest, weights = _load_student(student)
        return manifest, weights, 0.0
    settings = bootstrap or BootstrapSettings()
    settings.seconds = _first_clean_seconds(schedule) if bootstrap_s is None else bootstrap_s
    key = _bootstrap_key(video, settings, teacher.name, list(teacher.class_names))
    registry = ModelRegistry(cache_dir / "students" / key)
    if registry.latest(None) is None:
        console.print(f"bootstrapping the student on the first {settings.seconds:.0f} s (cached as {key})")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("bootstrap training", total=settings.epochs)
            bootstrap_student(
                video,
                teacher,
                registry,
                cloud.training,
                settings,
                on_epoch=lambda e, total: progress.update(task, completed=e),
            )
    manifest, weights = registry.load(None, registry.latest_version(None))
    return manifest, weights, settings.seconds


def default_bench_student(video: str, schedule: DriftSchedule) -> tuple[StudentModel, Teacher, float]:
    """(student, teacher, seconds not to score): what `edgesync bench` starts from on this video
    and schedule with the default cloud config, bootstrapped and cached on first use, and the
    teacher it learnt from; for scripts that study that student outside the bench."""
    cloud = CloudConfig()
    teacher = build_teacher(cloud.teacher)
    manifest, weights, skip_s = bench_student(video, schedule, None, teacher, cloud, edgesync_home() / "bench")
    return StudentModel.from_bytes(manifest, weights), teacher, skip_s


def run_bench(req: BenchRequest) -> dict:
    """Run every requested strategy on the same stream(s) and budgets; returns and writes the results."""
    started = time.monotonic()
    strategies = get_strategies(req.strategies)
    spec = load_cameras(req.cameras) if req.cameras is not None else None
    if spec is not None:
        schedules = [load_schedule(c.drift) for c in spec.cameras]
        lengths = {round(s.duration_s, 3) for s in schedules}
        if len(lengths) > 1:
            raise ConfigError(f"{req.cameras}: every camera's schedule must last as long, got {sorted(lengths)} s")
        schedule = schedules[0]
        video = resolve_video(spec.video)
        share = spec.train_budget_share or req.train_budget_share
    else:
        schedule = load_schedule(req.drift)
        video = resolve_video(req.video)
        share = req.train_budget_share
    cloud = req.cloud or CloudConfig()
    cache_dir = req.cache_dir or edgesync_home() / "bench"
    teacher = CachingTeacher(build_teacher(cloud.teacher))
    frames, fps = read_video(video)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("teacher on clean frames (ground truth, cached)", total=len(frames))
        truth = clean_ground_truth(
            video, teacher.inner, cache_dir, frames, lambda n, total: progress.update(task, completed=n)
        )

    base_manifest, base_weights, eval_from = bench_student(
        video, schedule, req.student, teacher.inner, cloud, cache_dir, req.bootstrap
    )

    duration = schedule.duration_s if req.max_seconds is None else min(schedule.duration_s, req.max_seconds)
    cameras = []
    if spec is not None:
        cameras = [
            CameraSetup(c.edge_id, s, c.seed, round(c.offset_s * fps))
            for c, s in zip(spec.cameras, schedules, strict=True)
        ]
    setup = StreamSetup(
        frames=frames,
        fps=fps,
        schedule=schedule,
        seed=req.seed,
        truth=truth,
        base_manifest=base_manifest,
        base_weights=base_weights,
        eval_from_s=eval_from,
        duration_s=duration,
        num_classes=len(base_manifest.class_names),
        cameras=cameras,
    )
    costs = CostModel(gpu_speedup=req.gpu_speedup)
    knobs = BenchKnobs(
        sampler=SamplerConfig(
            max_samples_per_s=req.max_samples_per_s, max_bytes_per_s=req.max_bytes_per_s, max_side=req.max_side
        ),
        # the seed moves training's randomness too, not only the drift's noise (the student is shared)
        training=cloud.training.model_copy(update={"imgsz": base_manifest.imgsz, "seed": req.seed}),
        costs=costs,
        uplink_kbit_s=req.uplink_kbit_s,
        downlink_kbit_s=req.downlink_kbit_s,
        rtt_s=req.rtt_ms / 1000,
        train_share=share,
        downlink=cloud.downlink,
    )
    predictions = PredictionCache()
    results: dict = {
        "video": str(spec.video if spec is not None else req.video),
        "drift": str(req.cameras if spec is not None else req.drift),
        "seed": req.seed,
        "duration_s": duration,
        "gpu_speedup": req.gpu_speedup,
        # which student every strategy started from: bootstraps differ across kinds of CPU, so
        # results are comparable only where this matches
        "student_sha256": base_manifest.sha256,
        "fps": fps,
        "evaluated_from_s": eval_from,
        "budgets": {
            "max_samples_per_s": req.max_samples_per_s,
            "max_bytes_per_s": req.max_bytes_per_s,
            "max_side": req.max_side,
            "train_budget_gpu_s": knobs.train_share * duration,
            "train_share": knobs.train_share,
            "train_bank_s": knobs.bank_s,
            "uplink_kbit_s": req.uplink_kbit_s,
            "downlink_kbit_s": req.downlink_kbit_s,
            "rtt_ms": req.rtt_ms,
        },
        "costs": costs.as_dict(),
        "segments": [{"name": s.name, "until_s": s.until_s} for s in schedule.segments],
        "strategies": {},
    }
    if spec is not None:
        results["cameras"] = [
            {
                "edge_id": c.edge_id,
                "drift": str(c.drift),
                "seed": c.seed,
                "offset_s": c.offset_s,
                "segments": [{"name": seg.name, "until_s": seg.until_s} for seg in s.segments],
            }
            for c, s in zip(spec.cameras, schedules, strict=True)
        ]
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    # wall time (not virtual): what the 20-minute target of the dev benchmark is about
    results["setup_wall_s"] = round(time.monotonic() - started, 1)  # student, teacher labels, predictions
    with Progress(*columns, console=console) as progress:
        for strategy in strategies:
            began = time.monotonic()
            task = progress.add_task(f"{strategy.name:<9}", total=setup.total_frames)
            sim = Simulation(strategy, setup, knobs, teacher, predictions, req.out / "work" / strategy.name)
            runs = sim.run_all(on_frame=lambda i, task=task: progress.update(task, completed=i + 1))
            per_camera = {
                edge_id: summarise(
                    run, sim.cameras[edge_id].setup.schedule, eval_from, req.window_s, setup.num_classes, duration
                )  # fmt: skip
                for edge_id, run in runs.items()
            }
            summary = combine(per_camera) if spec is not None else next(iter(per_camera.values()))
            summary["downlink"] = (strategy.downlink or knobs.downlink).model_dump()
            summary["wall_s"] = round(time.monotonic() - began, 1)
            results["strategies"][strategy.name] = summary
            progress.console.print(
                f"{strategy.name:<9} mAP50 {summary['map50_mean'] or 0:.3f}  updates {summary['updates']}  "
                f"uplink {summary['uplink_bytes'] / 1e6:.1f} MB  training {summary['train_gpu_s']:.0f} GPU-s  "
                f"({summary['wall_s']:.0f} s wall)"
            )
    results["wall_s"] = round(time.monotonic() - started, 1)
    req.out.mkdir(parents=True, exist_ok=True)
    (req.out / "results.json").write_text(json.dumps(results, indent=2))
    if spec is not None:
        (req.out / "results.md").write_text(cameras_table(results))
        cameras_plot(results, req.out / "accuracy.png")
    else:
        write_report(results, req.out)
    return results
