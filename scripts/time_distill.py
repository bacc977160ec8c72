"""Measure what distillation adds to a fine-tune: seconds per image-epoch with it off, with
attention distillation and with attention+generative, on real vtest.avi frames labelled by the
SSD teacher (yolov8n at 320 px, batch 16, the benchmark's recipe). The modes alternate
(off, attention, generative, off again...) so a busy machine slows all of them alike; the
ratios to "off" are what edgesync_bench/costs.py charges on top of its reference
train_s_per_image_epoch.

    .venv/bin/python scripts/time_distill.py [--images 32] [--epochs 3] [--rounds 2] [--student S]

On a GPU server, `--devices cpu,0` times the same work on the CPU and on GPU 0 in one run, which
is the speed-up `edgesync bench --gpu-speedup` models; each fine-tuned model is also scored on
held-out frames, so a run shows training works on that device, not only how fast. A machine
without the SSD model files can take frames labelled elsewhere (`--save-frames DIR` here,
`--frames DIR` there) and a teacher checkpoint of its own (`--teacher PATH.pt`), or an
architecture (`--teacher yolov8s.yaml`) whose random weights stand in for the production
teacher's cost: its features are as expensive as a trained one's, but timing is all they are
good for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from cloud_trainer.distill_training import TeacherFeatures
from cloud_trainer.training import LabelledFrame, evaluate, fine_tune
from edgesync import ultralytics_env
from edgesync.assets import vtest_path
from edgesync.config import DistillConfig, SSDTeacherConfig, TrainingConfig, UltralyticsTeacherConfig
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.teachers import Teacher, build_teacher
from edgesync.types import Detection

MODES = ("off", "attention", "attention+generative")
CLASSES = ["person", "car"]


def read_frames(count: int, held: int) -> list:
    """The first count + held frames of vtest.avi."""
    capture = cv2.VideoCapture(str(vtest_path()))
    images = []
    while len(images) < count + held:
        ok, frame = capture.read()
        if not ok:
            break
        images.append(frame)
    return images


def save_frames(frames: list[LabelledFrame], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        cv2.imwrite(str(directory / f"{frame.name}.jpg"), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    labels = {f.name: [d.as_list() for d in f.labels] for f in frames}
    (directory / "labels.json").write_text(json.dumps(labels))


def load_frames(directory: Path) -> list[LabelledFrame]:
    labels = json.loads((directory / "labels.json").read_text())
    frames = []
    for name, boxes in sorted(labels.items()):
        image = cv2.imread(str(directory / f"{name}.jpg"))
        if image is None:
            raise SystemExit(f"{directory / name}.jpg is missing or not an image")
        dets = [Detection(x1, y1, x2, y2, int(c), s) for x1, y1, x2, y2, c, s in boxes]
        frames.append(LabelledFrame(image, dets, name))
    return frames


def random_checkpoint(arch: str, directory: Path) -> Path:
    """A detector of the given architecture with random weights and COCO's first class names, saved
    the way ultralytics saves checkpoints (a cost stand-in for a production teacher)."""
    ultralytics_env.configure()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(arch, nc=len(CLASSES), verbose=False)
    model.names = dict(enumerate(CLASSES))
    path = directory / f"{Path(arch).stem}-random.pt"
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect"}}, path)
    return path


def make_teacher(spec: str, device: str, directory: Path) -> Teacher:
    if spec == "ssd":
        return build_teacher(SSDTeacherConfig(classes=CLASSES))
    weights = random_checkpoint(spec, directory) if spec.endswith(".yaml") else Path(spec)
    return build_teacher(UltralyticsTeacherConfig(weights=weights, classes=CLASSES, device=device, imgsz=640))


def time_fine_tune(
    student: StudentModel, frames: list[LabelledFrame], held: list[LabelledFrame], cfg: TrainingConfig, teacher
) -> tuple[float, float, float]:
    """(seconds per image-epoch between the first and the last epoch end, the teacher's seconds per
    training image, held-out mAP50 of the result)."""
    features = TeacherFeatures(teacher) if cfg.distill.mode != "off" else None
    ends: list[float] = []  # epoch ends: the time between the first and the last is pure training

    def epoch_end(done: int, total: int) -> None:
        ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        result = fine_tune(student, frames, held, cfg, Path(tmp), teacher=features, on_epoch=epoch_end)
    per_image_epoch = (ends[-1] - ends[0]) / ((len(ends) - 1) * len(frames))
    teacher_s = features.seconds / features.images if features is not None and features.images else 0.0
    return per_image_epoch, teacher_s, evaluate(result.model, held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="training frames (default 32)")
    parser.add_argument("--held", type=int, default=8, help="held-out frames scored after each fine-tune (default 8)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fine-tune, at least 2 (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="times each mode runs; medians are reported")
    parser.add_argument("--devices", default="cpu", help="comma list of training devices: cpu, 0, cuda:0 ...")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--student", type=Path, help="start from this .pt or .safetensors student (default: fresh)")
    parser.add_argument(
        "--teacher", default="ssd", help="ssd (default), a local .pt, or an arch .yaml (random weights)"
    )
    parser.add_argument("--frames", type=Path, help="read labelled frames from here instead of labelling vtest.avi")
    parser.add_argument("--save-frames", type=Path, help="write the labelled frames here (for --frames elsewhere)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the time is measured between epoch ends")
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown --modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    if args.frames is not None:
        frames = load_frames(args.frames)
    else:
        images = read_frames(args.images, args.held)
        labels = build_teacher(SSDTeacherConfig(classes=CLASSES)).label(images)
        frames = [LabelledFrame(im, d, f"{i:04d}") for i, (im, d) in enumerate(zip(images, labels, strict=True))]
    if args.save_frames is not None:
        save_frames(frames, args.save_frames)
    held, frames = frames[-args.held :], frames[: -args.held]
    if args.student is None:
        student = StudentModel.fresh(CLASSES, 320, "yolov8n.yaml")
    elif args.student.suffix == ".pt":
        student = StudentModel.from_pt(args.student, imgsz=320)
    else:
        student = load_safetensors_model(args.student)
    print(f"held-out mAP50 before training: {evaluate(student, held):.3f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in args.devices.split(","):
            teacher = make_teacher(args.teacher, device, Path(tmp)) if modes != ["off"] else None
            runs: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
            for _ in range(args.rounds):
                for mode in modes:
                    cfg = TrainingConfig(epochs=args.epochs, device=device, distill=DistillConfig(mode=mode))
                    runs[mode].append(time_fine_tune(student, frames, held, cfg, teacher))
            off = statistics.median(r[0] for r in runs[modes[0]])
            for mode in modes:
                row = {
                    "device": device,
                    "mode": mode,
                    "ms_per_image_epoch": 1000 * statistics.median(r[0] for r in runs[mode]),
                    "teacher_ms_per_image": 1000 * statistics.median(r[1] for r in runs[mode]),
                    "heldout_map50": statistics.median(r[2] for r in runs[mode]),
                }
                rows.append(row)
                print(
                    f"{device:8s} {mode:22s} {row['ms_per_image_epoch']:7.1f} ms per image-epoch "
                    f"({row['ms_per_image_epoch'] / (1000 * off):.2f}x {modes[0]}), teacher "
                    f"{row['teacher_ms_per_image']:6.1f} ms per image, held-out mAP50 {row['heldout_map50']:.3f}"
                )
    cpu = {r["mode"]: r["ms_per_image_epoch"] for r in rows if r["device"] == "cpu"}
    for row in rows:
        if row["device"] != "cpu" and row["mode"] in cpu:
            speedup = cpu[row["mode"]] / row["ms_per_image_epoch"]
            print(f"{row['device']} against cpu, {row['mode']}: {speedup:.1f}x faster")
    if args.json is not None:
        args.json.write_text(json.dumps({"images": len(frames), "epochs": args.epochs, "teacher": args.teacher,
                                         "rows": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
