"""Which layers' share of a fine-tune's first optimizer step breaks the student?

Outside the benchmark, on recipe_probe.py's frames (the bench's student, N teacher-labelled
frames of one drift plus N/2 clean replay frames, scored on 100 later frames of the drift
against the teacher on the clean frame): the student is fine-tuned for --epochs epochs with
the default training config but for the step, --seed and --lr0. The probe keeps ultralytics'
nominal batch of 64 images (the default before session 28), so with 24 + 12 frames the first
optimizer step lands in epoch 2, alone; --lr0 defaults to that time's 0.01. That step is then applied
to one group of layers at a time (the others keep the student's weights, batch-norm
statistics stay the student's), and scaled down as a whole, to show which part of it does
the damage and whether its direction is a good one. The step is taken twice: with the
batch-norm running statistics left trailing it, as ultralytics does, and corrected for it
(training.bn_follows_steps); the weights are the same either way.

    .venv/bin/python scripts/step_probe.py fog 0.7 --seed 2
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from recipe_probe import add_scene_arguments, probe_frames

from cloud_trainer.training import evaluate, fine_tune
from edgesync.config import TrainingConfig
from edgesync.student import StudentModel


def layer(key: str) -> int:
    """The layer index of a state-dict key of an ultralytics model ("model.12.cv1..." -> 12)."""
    return int(key.split(".")[1])


GROUPS: dict[str, Callable[[str], bool]] = {
    "stem (layers 0-1)": lambda k: layer(k) <= 1,
    "backbone after the stem (2-9)": lambda k: 2 <= layer(k) <= 9,
    "neck (10-21)": lambda k: 10 <= layer(k) <= 21,
    "head (22)": lambda k: layer(k) == 22,
    "all but the stem": lambda k: layer(k) >= 2,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="training's seed (shuffling, augmentation)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the fine-tune; the step is epoch 2's")
    parser.add_argument("--lr0", type=float, default=0.01, help="the step's learning rate")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first optimizer step lands in epoch 2), got {args.epochs}")
    probe = probe_frames(args)
    student = probe.student
    start = {k: v.clone() for k, v in student.state_dict().items()}
    trained = [k for k, v in start.items() if v.is_floating_point() and "running_" not in k]

    def score(state: dict[str, torch.Tensor]) -> float:
        model = StudentModel.from_state(state, student.class_names, student.imgsz, student.arch)
        return evaluate(model, probe.scene)

    def first_step(follow: bool) -> dict[str, torch.Tensor]:
        """The weights (and batch-norm statistics) after the first step, with or without the
        running statistics corrected for it (training.bn_follows_steps)."""
        states: dict[int, dict[str, torch.Tensor]] = {}

        def keep(epoch: int, state: dict[str, torch.Tensor]) -> None:
            states.setdefault(epoch, state)  # ultralytics reports the last epoch twice

        with tempfile.TemporaryDirectory() as workdir:
            fine_tune(
                student,
                probe.fresh + probe.replay,
                probe.fresh[:4],
                TrainingConfig(bn_follows_steps=follow, lr0=args.lr0, nominal_batch=None),
                Path(workdir),
                epochs=args.epochs,
                seed=args.seed,
                on_weights=keep,
            )
        return states[2]

    stepped, followed = first_step(False), first_step(True)
    size = sum(((stepped[k].float() - start[k].float()) ** 2).sum().item() for k in trained) ** 0.5
    print(f"{args.condition} {args.strength}, seed {args.seed}: held-out mAP50 on the scene")
    rows = [
        ("student", score(start)),
        (f"after the first step (L2 norm {size:.3f})", score(stepped)),
        ("the same, statistics following the step", score(followed)),
    ]
    for name, chosen in GROUPS.items():
        rows.append(
            (f"step on {name}", score({k: stepped[k] if k in trained and chosen(k) else start[k] for k in start}))
        )
    # the stem filter the step changed most, relative to its norm, and the stem's step without it
    filters = [(k, f) for k in trained if layer(k) <= 1 and k.endswith("conv.weight") for f in range(len(start[k]))]

    def moved(key: str, f: int) -> float:
        return ((stepped[key][f] - start[key][f]).norm() / start[key][f].norm()).item()

    key, f = max(filters, key=lambda kf: moved(*kf))
    var = start[key.replace("conv.weight", "bn.running_var")][f].item()
    spared = {k: stepped[k] if k in trained and layer(k) <= 1 else start[k] for k in start}
    spared[key] = stepped[key].clone()
    spared[key][f] = start[key][f]
    rows.append((f"stem step but {key[:7]} filter {f} ({100 * moved(key, f):.1f} %, var {var:.4f})", score(spared)))
    for share in (0.25, 0.5):
        scaled = {k: start[k] + share * (stepped[k] - start[k]) if k in trained else start[k] for k in start}
        rows.append((f"{share:.2f} of the step", score(scaled)))
    for name, value in rows:
        print(f"  {name:<52} {value:.3f}")
    print("the step's size per layer, relative to the layer's weights (convolution and batch-norm weights)")
    for index in sorted({layer(k) for k in trained}):
        keys = [k for k in trained if layer(k) == index and k.endswith("weight")]
        change = sum(((stepped[k].float() - start[k].float()) ** 2).sum().item() for k in keys) ** 0.5
        norm = sum((start[k].float() ** 2).sum().item() for k in keys) ** 0.5
        print(f"  layer {index:>2}: {change / norm:.4f}  (step {change:.4f}, weights {norm:.2f})")


if __name__ == "__main__":
    main()
