"""How good are the labels a drifted scene can be learnt from? The teacher's own accuracy per segment.

The cloud only ever sees the drifted frame the edge uploads, so the teacher labels that frame;
the benchmark scores against the teacher on the clean frame. A student that learnt to copy the
teacher perfectly on drifted frames would score about what the teacher itself scores there, so
the teacher's mAP50 on drifted frames (against itself on the clean frames) bounds what
fine-tuning on its labels can win back. This script measures it per segment of a drift
schedule, beside the bench's bootstrapped student (`static`) on the same frames:

    .venv/bin/python scripts/teacher_ceiling.py configs/drift/dev.yaml [--every-s 1] [--seed 0]

Frames are taken every `--every-s` seconds of stream time after the schedule's first (bootstrap)
segment, skipping the video frames the student was bootstrapped on, as the benchmark does, and
drifted as the benchmark drifts them; means over segments weigh each by its frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgesync.assets import vtest_path
from edgesync.drift import DriftApplier, load_schedule
from edgesync.evaluation import map50
from edgesync.ground_truth import read_video
from edgesync.types import detections_to_array
from edgesync_bench.runner import default_bench_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drift", type=Path, help="drift schedule YAML, e.g. configs/drift/dev.yaml")
    parser.add_argument("--every-s", type=float, default=1.0, help="stream seconds between scored frames")
    parser.add_argument("--seed", type=int, default=0, help="drift noise seed, as edgesync bench --seed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.every_s <= 0:
        parser.error("--every-s must be positive")

    schedule = load_schedule(args.drift)
    video = str(vtest_path())
    student, teacher, base = default_bench_student(video, schedule)
    skip_s = base.eval_from_s
    frames, fps = read_video(video)
    applier = DriftApplier(schedule, args.seed)
    classes = len(student.class_names)

    by_segment: dict[str, dict[str, list[np.ndarray]]] = {}
    t = skip_s
    while t < schedule.duration_s:
        index = round(t * fps)
        if index % len(frames) < base.bootstrap_frames:
            t += args.every_s
            continue
        clean = frames[index % len(frames)]
        drifted = applier.apply(clean, t, index)
        truth, labels = teacher.label([clean, drifted])
        predicted = student.predict([drifted])[0].detections
        rows = by_segment.setdefault(applier.condition_at(t), {"truth": [], "teacher": [], "static": []})
        rows["truth"].append(detections_to_array(truth))
        rows["teacher"].append(detections_to_array(labels))
        rows["static"].append(detections_to_array(predicted))
        t += args.every_s

    results = {}
    print(f"{args.drift}, one frame every {args.every_s:g} s after the first {skip_s:g} s, mAP50 in points")
    print(f"{'segment':12s} {'frames':>6s} {'teacher':>8s} {'static':>8s} {'headroom':>9s}")
    for name, rows in by_segment.items():
        teacher_map = 100 * map50(rows["teacher"], rows["truth"], classes)
        static_map = 100 * map50(rows["static"], rows["truth"], classes)
        results[name] = {"frames": len(rows["truth"]), "teacher": teacher_map, "static": static_map}
        headroom = teacher_map - static_map
        print(f"{name:12s} {len(rows['truth']):6d} {teacher_map:8.1f} {static_map:8.1f} {headroom:+9.1f}")
    total = sum(r["frames"] for r in results.values())
    teacher_mean = sum(r["teacher"] * r["frames"] for r in results.values()) / total
    static_mean = sum(r["static"] * r["frames"] for r in results.values()) / total
    print(f"{'mean':12s} {total:6d} {teacher_mean:8.1f} {static_mean:8.1f} {teacher_mean - static_mean:+9.1f}")
    if args.json is not None:
        summary = {"teacher": teacher_mean, "static": static_mean}
        args.json.write_text(json.dumps({"drift": str(args.drift), "segments": results, "mean": summary}, indent=2))


if __name__ == "__main__":
    main()
