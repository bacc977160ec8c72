"""`edgesync bench`: set up the stream once, run each strategy, write the results."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing.managers import SyncManager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_trainer.bootstrap import BootstrapSettings, bootstrap_student, frames_spanned, video_length_s
from cloud_trainer.registry import ModelRegistry
from edgesync.assets import edgesync_home, resolve_video
from edgesync.config import CloudConfig, SamplerConfig
from edgesync.drift import DriftSchedule, load_schedule
from edgesync.errors import ConfigError
from edgesync.ground_truth import clean_ground_truth, read_video
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.teachers import Teacher, build_teacher
from edgesync.types import ModelManifest
from edgesync_bench.cameras import combine, load_cameras
from edgesync_bench.cameras import markdown_table as cameras_table
from edgesync_bench.cameras import plot as cameras_plot
from edgesync_bench.costs import CostModel
from edgesync_bench.metrics import summarise
from edgesync_bench.report import write_report
from edgesync_bench.simulation import CachingTeacher, PredictionCache, Simulation
from edgesync_bench.strategies import Strategy, get_strategies
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
    jobs: int = 1  # strategies run at a time, each in its own process with its share of the cores
    resume: bool = False  # keep the strategies out/results.json already holds for this same stream


def _bootstrap_key(video: str, settings: BootstrapSettings, teacher: Teacher) -> str:
    stat = Path(video).stat()
    text = f"{Path(video).resolve()}:{stat.st_size}:{settings}:{teacher.labels_key}"
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


# The bench bootstraps its student on at most this share of the video, and never scores the frames
# it bootstrapped on, wherever a looping stream shows them again: on a short clip (vtest.avi lasts
# 79.5 s) a minute-long bootstrap would otherwise have most of the stream score the student on
# its own training frames. A quarter leaves three of every four frames ones it never saw.
BOOTSTRAP_MAX_SHARE = 0.25


@dataclass(frozen=True)
class BenchStudent:
    """The student every strategy starts from, and which frames the bench must not score."""

    manifest: ModelManifest
    weights: bytes
    eval_from_s: float  # stream seconds before this (the bootstrap's clean segment) are not scored
    bootstrap_frames: int  # video frames 0 to this (exclusive) trained it: never scored


def bench_student(
    video: str,
    schedule: DriftSchedule,
    student: Path | None,
    teacher,
    cloud: CloudConfig,
    cache_dir: Path,
    bootstrap: BootstrapSettings | None = None,
    bootstrap_s: float | None = None,
) -> BenchStudent:
    """The given student, or one bootstrapped (and cached by video and settings) on the first
    bootstrap_s seconds of the clean video (default: the schedule's first segment, which must be
    clean), at most BOOTSTRAP_MAX_SHARE of the video."""
    if student is not None:
        manifest, weights = _load_student(student)
        return BenchStudent(manifest, weights, 0.0, 0)
    first_clean = _first_clean_seconds(schedule) if bootstrap_s is None else bootstrap_s
    length = video_length_s(video)
    settings = bootstrap or BootstrapSettings()
    settings.seconds = first_clean if length is None else min(first_clean, round(length * BOOTSTRAP_MAX_SHARE, 2))
    key = _bootstrap_key(video, settings, teacher)
    registry = ModelRegistry(cache_dir / "students" / key)
    if registry.latest(None) is None:
        console.print(f"bootstrapping the student on the first {settings.seconds:.1f} s (cached as {key})")
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
    return BenchStudent(manifest, weights, first_clean, frames_spanned(video, settings.seconds))


def default_bench_student(video: str, schedule: DriftSchedule) -> tuple[StudentModel, Teacher, BenchStudent]:
    """(student, teacher, what it was bootstrapped on): what `edgesync bench` starts from on this
    video and schedule with the default cloud config, bootstrapped and cached on first use, and
    the teacher it learnt from; for scripts that study that student outside the bench."""
    cloud = CloudConfig()
    teacher = build_teacher(cloud.teacher)
    video = resolve_video(video)
    base = bench_student(video, schedule, None, teacher, cloud, edgesync_home() / "bench")
    return StudentModel.from_bytes(base.manifest, base.weights), teacher, base


@dataclass
class _Prepared:
    """What every strategy of one `edgesync bench` run shares, ready to run them."""

    setup: StreamSetup
    knobs: BenchKnobs
    teacher: CachingTeacher
    spec: object | None  # the cameras file, when several cameras share the cloud
    header: dict  # results.json without the strategies


def _prepare(req: BenchRequest) -> _Prepared:
    """Load (or on first use compute and cache) the footage, ground truth and student, and the budgets."""
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

    base = bench_student(video, schedule, req.student, teacher.inner, cloud, cache_dir, req.bootstrap)

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
        base_manifest=base.manifest,
        base_weights=base.weights,
        eval_from_s=base.eval_from_s,
        bootstrap_frames=base.bootstrap_frames,
        duration_s=duration,
        num_classes=len(base.manifest.class_names),
        cameras=cameras,
    )
    costs = CostModel(gpu_speedup=req.gpu_speedup)
    knobs = BenchKnobs(
        sampler=SamplerConfig(
            max_samples_per_s=req.max_samples_per_s, max_bytes_per_s=req.max_bytes_per_s, max_side=req.max_side
        ),
        # the seed moves training's randomness too, not only the drift's noise (the student is shared)
        training=cloud.training.model_copy(update={"imgsz": base.manifest.imgsz, "seed": req.seed}),
        costs=costs,
        uplink_kbit_s=req.uplink_kbit_s,
        downlink_kbit_s=req.downlink_kbit_s,
        rtt_s=req.rtt_ms / 1000,
        train_share=share,
        downlink=cloud.downlink,
    )
    header: dict = {
        "video": str(spec.video if spec is not None else req.video),
        "drift": str(req.cameras if spec is not None else req.drift),
        "seed": req.seed,
        "duration_s": duration,
        "gpu_speedup": req.gpu_speedup,
        # which student every strategy started from: bootstraps differ across kinds of CPU, so
        # results are comparable only where this matches
        "student_sha256": base.manifest.sha256,
        "fps": fps,
        "evaluated_from_s": base.eval_from_s,
        # video frames the student was bootstrapped on: never scored, however often the stream loops
        "bootstrap_video_frames": base.bootstrap_frames,
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
        # the teacher and training recipe (--config), so --resume never mixes two recipes' numbers
        "cloud_config_sha256": hashlib.sha256(cloud.model_dump_json().encode()).hexdigest(),
        "segments": [{"name": s.name, "until_s": s.until_s} for s in schedule.segments],
    }
    if spec is not None:
        header["cameras"] = [
            {
                "edge_id": c.edge_id,
                "drift": str(c.drift),
                "seed": c.seed,
                "offset_s": c.offset_s,
                "segments": [{"name": seg.name, "until_s": seg.until_s} for seg in s.segments],
            }
            for c, s in zip(spec.cameras, schedules, strict=True)
        ]
    return _Prepared(setup, knobs, teacher, spec, header)


def _run_strategy(
    req: BenchRequest,
    prep: _Prepared,
    strategy: Strategy,
    predictions: PredictionCache,
    on_frame: Callable[[int], None],
) -> dict:
    """One strategy over the prepared stream(s): its entry in results.json."""
    began = time.monotonic()
    setup = prep.setup
    sim = Simulation(strategy, setup, prep.knobs, prep.teacher, predictions, req.out / "work" / strategy.name)
    runs = sim.run_all(on_frame=on_frame)
    per_camera = {
        edge_id: summarise(
            run,
            sim.cameras[edge_id].setup.schedule,
            setup.eval_from_s,
            req.window_s,
            setup.num_classes,
            setup.duration_s,
        )
        for edge_id, run in runs.items()
    }
    summary = combine(per_camera) if prep.spec is not None else next(iter(per_camera.values()))
    summary["downlink"] = (strategy.downlink or prep.knobs.downlink).model_dump()
    summary["wall_s"] = round(time.monotonic() - began, 1)  # wall time, not virtual
    return summary


# A strategy run in a worker process (`--jobs`): the process prepares from the caches the parent
# filled, so only the request and the strategy's name cross the process boundary. The parent
# shares how many strategies still run; each process takes an equal share of the cores, so the
# last one left uses them all. Thread counts do not change the numbers: on the dev benchmark every
# model trained with one thread per process was bit-identical to the one trained with two.
_child: dict = {}


def _start_child(req: BenchRequest, running, progress) -> None:
    exit_with_parent()
    _child.update(req=req, prep=_prepare(req), running=running, progress=progress)


def exit_with_parent() -> None:
    """End this process as soon as the one that started it is gone.

    A bench killed by a signal it cannot handle (SIGTERM from a timeout or a cancelled CI job,
    SIGKILL) never shuts its process pool down, and its strategies would run on, orphaned, for
    up to their whole length, each holding a few GB."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of their pipe closes, at once if it already has
        os._exit(1)  # nothing of an orphaned strategy is worth keeping: its bench writes the results

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _share_cores() -> None:
    import cv2
    import torch

    threads = max(1, _usable_cores() // max(1, _child["running"].value))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)  # the teacher runs in OpenCV DNN


def _strategy_in_child(name: str) -> dict:
    req, prep, progress = _child["req"], _child["prep"], _child["progress"]
    (strategy,) = get_strategies([name])
    step = max(1, prep.setup.total_frames // 200)

    def on_frame(i: int) -> None:
        if (i + 1) % step == 0 or i + 1 == prep.setup.total_frames:
            progress.put((name, i + 1))
            _share_cores()

    _share_cores()
    return _run_strategy(req, prep, strategy, PredictionCache(), on_frame)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_in_processes(
    req: BenchRequest,
    strategies: list[Strategy],
    total_frames: int,
    progress: Progress,
    tasks: dict,
    on_done: Callable[[str, dict], None],
) -> None:
    """Run the strategies req.jobs at a time in worker processes, sharing the cores between them;
    on_done gets each one's summary as it finishes."""
    context = multiprocessing.get_context("spawn")  # a fork would copy torch's thread pools mid-use
    manager = SyncManager(ctx=context)
    manager.start(exit_with_parent)  # its server process would outlive a killed bench as well
    with manager:
        queue = manager.Queue()
        running = manager.Value("i", min(req.jobs, len(strategies)))
        with ProcessPoolExecutor(
            max_workers=req.jobs, mp_context=context, initializer=_start_child, initargs=(req, running, queue)
        ) as pool:
            pending = {pool.submit(_strategy_in_child, s.name): s.name for s in strategies}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    name, completed = queue.get()
                    progress.update(tasks[name], completed=completed)
                for future in done:
                    name = pending.pop(future)
                    if future.exception() is not None:  # the strategies not started yet would be wasted
                        pool.shutdown(wait=False, cancel_futures=True)
                    summary = future.result()
                    progress.update(tasks[name], completed=total_frames)
                    _print_summary(progress, name, summary)
                    on_done(name, summary)
                running.value = min(req.jobs, len(pending))


def _print_summary(progress: Progress, name: str, summary: dict) -> None:
    progress.console.print(
        f"{name:<9} mAP50 {summary['map50_mean'] or 0:.3f}  updates {summary['updates']}  "
        f"uplink {summary['uplink_bytes'] / 1e6:.1f} MB  training {summary['train_gpu_s']:.0f} GPU-s  "
        f"({summary['wall_s']:.0f} s wall)"
    )


# what results.json holds about this one command rather than about the stream, student and budgets
_RUN_KEYS = {"strategies", "unfinished", "reused", "setup_wall_s", "jobs", "wall_s"}


def _finished_earlier(req: BenchRequest, header: dict) -> dict[str, dict]:
    """The requested strategies that req.out/results.json already holds, when resuming a bench
    that stopped part-way; an error if that file was written for another stream, student,
    recipe or budgets. The code itself is not compared: resume on the commit that wrote it."""
    path = req.out / "results.json"
    if not req.resume or not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume: cannot read {path}: {exc}") from None
    mine = json.loads(json.dumps(header))  # as it would read back from results.json
    differ = sorted(k for k in (set(mine) | set(earlier)) - _RUN_KEYS if earlier.get(k) != mine.get(k))
    if differ:
        raise ConfigError(
            f"--resume: {path} was written for another run ({', '.join(differ)} differ); "
            "pass another --out, or drop --resume to start over"
        )
    return {name: s for name, s in earlier.get("strategies", {}).items() if name in req.strategies}


def _write_results(results: dict, out: Path, several_cameras: bool) -> None:
    """results.json (replaced whole, never left half-written), and once a strategy has finished
    the markdown table and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "results.json.partial"
    partial.write_text(json.dumps(results, indent=2))
    os.replace(partial, out / "results.json")
    if not results["strategies"]:
        return
    if several_cameras:
        (out / "results.md").write_text(cameras_table(results))
        cameras_plot(results, out / "accuracy.png")
    else:
        write_report(results, out)


def run_bench(req: BenchRequest) -> dict:
    """Run every requested strategy on the same stream(s) and budgets; returns and writes the results.

    results.json is rewritten as each strategy finishes, listing the ones still to run under
    `unfinished`, so a bench stopped part-way keeps what it finished; with req.resume a rerun
    into the same directory runs only those (`reused` names the ones it kept).
    With req.jobs above 1 the strategies run that many at a time in worker processes; each
    strategy's numbers are the same either way (see the note above _child)."""
    started = time.monotonic()
    if req.jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {req.jobs}")
    strategies = get_strategies(req.strategies)
    prep = _prepare(req)
    done = _finished_earlier(req, prep.header)
    to_run = [s for s in strategies if s.name not in done]
    if done:
        console.print(f"resuming: {', '.join(done)} already finished in {req.out / 'results.json'}")
    results = prep.header | {"strategies": {}, "unfinished": [s.name for s in to_run], "reused": list(done)}
    jobs = max(1, min(req.jobs, len(to_run)))
    # wall time (not virtual): what the 20-minute target of the dev benchmark is about
    results["setup_wall_s"] = round(time.monotonic() - started, 1)  # student, teacher labels, footage
    results["jobs"] = jobs

    def write() -> None:
        results["strategies"] = {s.name: done[s.name] for s in strategies if s.name in done}  # in the order asked
        results["unfinished"] = [s.name for s in to_run if s.name not in done]
        results["wall_s"] = round(time.monotonic() - started, 1)
        _write_results(results, req.out, prep.spec is not None)

    def finished(name: str, summary: dict) -> None:
        done[name] = summary
        write()

    write()  # from now on results.json is this command's: an earlier one's numbers never linger there

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        tasks = {s.name: progress.add_task(f"{s.name:<9}", total=prep.setup.total_frames) for s in to_run}
        if jobs > 1:
            _run_in_processes(replace(req, jobs=jobs), to_run, prep.setup.total_frames, progress, tasks, finished)
        else:
            predictions = PredictionCache()  # strategies running the same model share its predictions
            for strategy in to_run:
                task = tasks[strategy.name]
                summary = _run_strategy(
                    req, prep, strategy, predictions, lambda i, task=task: progress.update(task, completed=i + 1)
                )
                _print_summary(progress, strategy.name, summary)
                finished(strategy.name, summary)
    write()  # again, for the whole command's wall time (and the report, when all were reused)
    return results
