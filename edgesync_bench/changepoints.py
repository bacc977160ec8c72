"""`edgesync bench changepoints`: how well the edge's change-point detector finds scene changes.

The video is replayed through the drift schedule, the bench student runs on every frame (its
confidences are part of the embedding, as on the edge), and the detector's firings are matched
one to one against the true boundaries: the schedule's segment starts, or the times in a
`--truth` file (one per line, seconds) for footage with real cuts. A firing within tolerance_s
after a boundary is a hit; any other firing is a false alarm.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgesync.assets import edgesync_home, resolve_video
from edgesync.changepoint import SceneWatcher
from edgesync.config import ChangePointConfig, CloudConfig
from edgesync.drift import DriftApplier, load_schedule
from edgesync.errors import InvalidInput
from edgesync.ground_truth import read_video
from edgesync.student import StudentModel
from edgesync.teachers import build_teacher
from edgesync_bench.runner import bench_student

console = Console(stderr=True)


@dataclass
class ChangePointRequest:
    """What `edgesync bench changepoints` was asked to do."""

    video: str
    drift: Path
    truth: Path | None = None
    tolerance_s: float = 5.0
    student: Path | None = None
    seed: int = 0
    out: Path | None = None
    detector: ChangePointConfig | None = None
    cloud: CloudConfig | None = None
    cache_dir: Path | None = None
    max_seconds: float | None = None


def read_truth(path: Path) -> list[float]:
    """Boundary times from a file with one number of seconds per line (blank lines and # comments skipped)."""
    times = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            times.append(float(text))
        except ValueError:
            raise InvalidInput(f"{path}:{n}: expected a time in seconds, got {text!r}") from None
    return sorted(times)


def match(detections: list[float], truth: list[float], tolerance_s: float, duration_s: float) -> dict:
    """Precision, recall, F1, delays and false alarms of detections against truth (one to one)."""
    unused = sorted(detections)
    delays = []
    for boundary in sorted(truth):
        hit = next((d for d in unused if boundary <= d <= boundary + tolerance_s), None)
        if hit is not None:
            unused.remove(hit)
            delays.append(hit - boundary)
    hits = len(delays)
    precision = hits / len(detections) if detections else (1.0 if not truth else 0.0)
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "delay_s_median": statistics.median(delays) if delays else None,
        "delays_s": [round(d, 2) for d in delays],
        "false_alarms": len(unused),
        "false_alarms_per_10min": len(unused) / (duration_s / 600.0) if duration_s > 0 else 0.0,
    }


def run_changepoints(req: ChangePointRequest) -> dict:
    """Run the detector over the drifted stream; returns (and writes) changepoints.json's content."""
    started = time.monotonic()
    schedule = load_schedule(req.drift)
    video = resolve_video(req.video)
    cloud = req.cloud or CloudConfig()
    detector_cfg = req.detector or ChangePointConfig()
    frames, fps = read_video(video)
    teacher = build_teacher(cloud.teacher) if req.student is None else None
    # the detector needs a student's confidences, whatever the schedule: the one the accuracy bench
    # bootstraps on dev.yaml (the video's first clean minute, at most a quarter of the video) is
    # shared through the cache
    base = bench_student(
        video, schedule, req.student, teacher, cloud, req.cache_dir or edgesync_home() / "bench", bootstrap_s=60.0
    )
    student = StudentModel.from_bytes(base.manifest, base.weights, source="bench student")
    duration = schedule.duration_s if req.max_seconds is None else min(schedule.duration_s, req.max_seconds)
    truth = read_truth(req.truth) if req.truth else [b for b in schedule.boundaries()[1:] if b < duration]
    drift = DriftApplier(schedule, req.seed)
    watcher = SceneWatcher(detector_cfg)
    fired: list[dict] = []
    total = int(duration * fps)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("change points", total=total)
        for i in range(total):
            t = i / fps
            progress.update(task, completed=i + 1)
            if not watcher.due(t):
                continue
            image = drift.apply(frames[i % len(frames)], t, i)
            point = watcher.watch(t, image, student.predict([image])[0].scores)
            if point is not None:
                fired.append({"t_s": round(point.t_s, 2), "confidence": round(point.confidence, 3)})
    result = {
        "video": str(req.video),
        "drift": str(req.drift),
        "truth": str(req.truth) if req.truth else "schedule boundaries",
        "tolerance_s": req.tolerance_s,
        "duration_s": duration,
        "seed": req.seed,
        "detector": detector_cfg.model_dump(),
        **match([f["t_s"] for f in fired], truth, req.tolerance_s, duration),
        "boundaries_s": truth,
        "detections": fired,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if req.out is not None:
        req.out.mkdir(parents=True, exist_ok=True)
        (req.out / "changepoints.json").write_text(json.dumps(result, indent=2))
    return result


def print_summary(result: dict) -> None:
    table = Table(title=f"change points: {result['drift']} (tolerance {result['tolerance_s']:g} s)")
    for column in ("precision", "recall", "F1", "median delay (s)", "false alarms / 10 min"):
        table.add_column(column, justify="right")
    delay = result["delay_s_median"]
    table.add_row(
        f"{result['precision']:.2f}",
        f"{result['recall']:.2f}",
        f"{result['f1']:.2f}",
        "–" if delay is None else f"{delay:.1f}",
        f"{result['false_alarms_per_10min']:.2f}",
    )
    console.print(table)
    console.print(f"boundaries {result['boundaries_s']}; detections {[d['t_s'] for d in result['detections']]}")
