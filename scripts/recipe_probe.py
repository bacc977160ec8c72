"""How much can one fine-tune win back from a drifted scene, and what does it cost the scene before?

Outside the benchmark's loop and budget: the bench's bootstrapped student is fine-tuned on N
teacher-labelled frames of vtest.avi under one drift condition (one frame a second, as the
sampler's budget allows, from t = 130 s) plus N/2 clean replay frames from the bootstrap minute,
for each recipe given, then scored (mAP50 against the teacher on the clean frame, as the bench
does) on 100 later frames under the same drift and on 60 clean frames. The held-out curve after
every epoch shows whether more epochs would help.

    .venv/bin/python scripts/recipe_probe.py night 0.8 --frames 24 \\
        --recipe '{}' --recipe '{"lr0": 0.002, "freeze_bn": true}'

Each recipe is JSON of training-config fields (edgesync.config.TrainingConfig) plus "epochs".
It starts from the bench's student for `--drift` (default dev.yaml), bootstrapping it if none is cached.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_trainer.replay_style import restyled_replay
from cloud_trainer.training import LabelledFrame, evaluate, fine_tune
from edgesync.assets import vtest_path
from edgesync.config import TrainingConfig
from edgesync.drift import apply_conditions, load_schedule
from edgesync.ground_truth import read_video
from edgesync.student import StudentModel
from edgesync_bench.runner import default_bench_student


@dataclass
class ProbeFrames:
    """A drifted scene to fine-tune on: the bench's student and the frames around it."""

    student: StudentModel
    fresh: list[LabelledFrame]  # drifted training frames, labelled by the teacher on what it sees
    replay: list[LabelledFrame]  # clean frames of the bootstrap minute
    scene: list[LabelledFrame]  # later frames of the same drift, judged against the clean frame
    clean: list[LabelledFrame]  # clean frames from the end of the stream


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("condition", help="drift condition (edgesync/drift.py), e.g. night, fog")
    parser.add_argument("strength", type=float, help="0 (clean) to 1 (harshest)")
    parser.add_argument("--frames", type=int, default=24, help="drifted training frames, one a second")
    parser.add_argument("--start-s", type=float, default=130.0, help="stream time of the first training frame")
    parser.add_argument(
        "--drift", type=Path, default=Path("configs/drift/dev.yaml"), help="whose bench student to start from"
    )


def probe_frames(args: argparse.Namespace) -> ProbeFrames:
    """The student and frames add_scene_arguments' arguments name."""
    video = str(vtest_path())
    frames, fps = read_video(video)
    student, teacher, _ = default_bench_student(video, load_schedule(args.drift))

    def clean(t: float):
        return frames[round(t * fps) % len(frames)]

    def drifted(t: float):
        return apply_conditions(clean(t), args.condition, args.strength, seed=0, frame_index=round(t * fps))

    def labelled(images, truth_images, prefix: str) -> list[LabelledFrame]:
        labels = teacher.label(truth_images)
        return [
            LabelledFrame(im, lab, f"{prefix}{i:04d}") for i, (im, lab) in enumerate(zip(images, labels, strict=True))
        ]

    train_t = [args.start_s + i for i in range(args.frames)]
    fresh = labelled([drifted(t) for t in train_t], [drifted(t) for t in train_t], "f")  # the teacher sees drift
    rng = random.Random(0)
    replay_t = [rng.uniform(0, 60) for _ in range(args.frames // 2)]
    replay = labelled([clean(t) for t in replay_t], [clean(t) for t in replay_t], "r")
    eval_t = [args.start_s + args.frames + 2 + 0.5 * i for i in range(100)]
    scene = labelled([drifted(t) for t in eval_t], [clean(t) for t in eval_t], "e")  # judged on the clean frame
    clean_t = [400 + 0.5 * i for i in range(60)]
    return ProbeFrames(
        student, fresh, replay, scene, labelled([clean(t) for t in clean_t], [clean(t) for t in clean_t], "c")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--recipe", action="append", default=[], help="JSON training overrides; repeatable")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="also score each model with its batch-norm statistics re-estimated on the drifted training frames",
    )
    args = parser.parse_args()
    probe = probe_frames(args)
    student, fresh, replay, scene, before_scene = probe.student, probe.fresh, probe.replay, probe.scene, probe.clean
    print(
        f"{args.condition} {args.strength}, {args.frames} frames + {len(replay)} replay: before "
        f"{evaluate(student, scene):.3f} on the scene, {evaluate(student, before_scene):.3f} clean"
    )
    if args.recalibrate:
        adapted = student.recalibrated([f.image for f in fresh])
        print(
            f"recalibrated on the {len(fresh)} drifted frames, no training: {evaluate(adapted, scene):.3f} on the "
            f"scene, {evaluate(adapted, before_scene):.3f} clean"
        )
    for text in args.recipe or ["{}"]:
        overrides = json.loads(text)
        epochs = overrides.pop("epochs", 10)
        cfg = TrainingConfig(**overrides)
        curve: list[float] = []

        def score(epoch: int, state, curve: list[float] = curve) -> None:
            if epoch > len(curve):
                model = StudentModel.from_state(state, student.class_names, student.imgsz, student.arch)
                curve.append(round(evaluate(model, scene), 2))

        started = time.monotonic()
        with tempfile.TemporaryDirectory() as workdir:
            shown = fresh + restyled_replay(replay, fresh, cfg.replay_style)
            tuned = fine_tune(student, shown, fresh[:4], cfg, Path(workdir), epochs=epochs, on_weights=score)
        print(
            f"{text}: {evaluate(tuned.model, scene):.3f} on the scene, {evaluate(tuned.model, before_scene):.3f} "
            f"clean; per epoch {curve}; {time.monotonic() - started:.0f} s"
        )
        if args.recalibrate:
            adapted = tuned.model.recalibrated([f.image for f in fresh])
            print(
                f"{text} recalibrated: {evaluate(adapted, scene):.3f} on the scene, "
                f"{evaluate(adapted, before_scene):.3f} clean"
            )


if __name__ == "__main__":
    main()
