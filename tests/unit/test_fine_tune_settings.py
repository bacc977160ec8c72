"""Fine-tuning settings the job profiler chooses between, on a real (tiny) ultralytics fine-tune."""

from __future__ import annotations

import pytest
import torch
from synthetic import CLASSES, frames

from cloud_trainer.training import fine_tune, nominal_batch, ultralytics_default
from edgesync.config import TrainingConfig
from edgesync.student import StudentModel


def bn_stats(model: StudentModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def same(before: torch.Tensor, after: torch.Tensor) -> bool:
    """Unchanged by training: ultralytics hands back the checkpoint it saved in half precision."""
    return torch.equal(before.half().float(), after)


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not same(before[k], after[k])}


def test_freeze_bn_keeps_every_batch_norm_statistic_while_the_weights_train(tmp_path) -> None:
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=2, nominal_batch=4)
    plain = fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path / "plain", seed=0).model
    kept = fine_tune(
        student, frames(8), frames(2, 1), cfg.model_copy(update={"freeze_bn": True}), tmp_path / "kept", seed=0
    ).model

    assert changed(bn_stats(student), bn_stats(plain))  # re-estimated from the new frames by default
    assert not changed(bn_stats(student), bn_stats(kept))
    weights = [k for k in student.state_dict() if k.endswith("conv.weight")]
    assert any(not same(student.state_dict()[k], kept.state_dict()[k]) for k in weights)


def test_an_epoch_nominal_batch_steps_once_an_epoch_on_a_small_job() -> None:
    # ultralytics accumulates round(nbs / batch) batches before a step
    assert nominal_batch("epoch", images=12, batch=12) == 12  # a new scene's first job: one batch
    assert nominal_batch("epoch", images=20, batch=16) == 32  # two batches, one step
    assert nominal_batch("epoch", images=100, batch=16) == 64  # a large job keeps ultralytics' 64
    assert nominal_batch(16, images=100, batch=16) == 16
    assert nominal_batch(None, images=12, batch=12) is None


def test_an_epoch_nominal_batch_changes_the_weights_in_the_first_epoch_of_a_small_job(tmp_path) -> None:
    """Two batches of 4 an epoch: ultralytics' nominal batch of 64 accumulates all four batches of
    a two-epoch job into one step at its end (it caps the accumulation at the job's batches), so
    the first epoch leaves the weights as they were; "epoch" steps after each epoch's two batches."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    weights = [k for k in student.state_dict() if k.endswith("conv.weight")]

    def moved_in_first_epoch(setting: int | str | None) -> set[str]:
        first: dict[str, torch.Tensor] = {}

        def keep(epoch: int, state: dict[str, torch.Tensor]) -> None:
            if epoch == 1 and not first:
                first.update(state)

        cfg = TrainingConfig(imgsz=64, batch=4, epochs=2, nominal_batch=setting)
        fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path / str(setting), seed=0, on_weights=keep)
        return {k for k in weights if not torch.equal(student.state_dict()[k].float(), first[k].float())}

    assert not moved_in_first_epoch(None)
    assert moved_in_first_epoch("epoch")


def test_training_from_scratch_takes_ultralytics_rate_and_a_fine_tune_the_configured_one(tmp_path, monkeypatch) -> None:
    """training.lr0 is a fine-tune's rate: the bootstrap's random weights keep ultralytics' 0.01,
    so a lower fine-tuning rate does not change the bootstrapped student."""
    from ultralytics import YOLO

    rates: list[float] = []

    class Stop(Exception):
        pass

    def train(self, trainer=None, **overrides):
        rates.append(overrides["lr0"])
        raise Stop

    monkeypatch.setattr(YOLO, "train", train)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=1, lr0=0.003)
    for scratch in (True, False):
        with pytest.raises(Stop):
            fine_tune(student, frames(4), frames(2, 1), cfg, tmp_path / str(scratch), from_scratch=scratch)
    assert rates == [ultralytics_default("lr0"), 0.003] == [0.01, 0.003]


def test_freeze_keeps_the_first_layers_weights(tmp_path) -> None:
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=2, nominal_batch=4, freeze=10)
    tuned = fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path, seed=0).model
    before, after = student.state_dict(), tuned.state_dict()
    backbone = [k for k in before if k.startswith("model.0.") and k.endswith("weight")]
    head = [k for k in before if k.startswith("model.22.") and k.endswith("weight")]
    assert backbone and all(same(before[k], after[k]) for k in backbone)
    assert any(not same(before[k], after[k]) for k in head)


def test_training_from_scratch_trains_the_layers_a_fine_tune_would_freeze(tmp_path) -> None:
    """The bootstrap trains from random weights with the cloud's training config: `freeze` is for
    fine-tunes of a trained student, and random layers kept as they are would stay random."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=2, nominal_batch=4, freeze=2)
    stem = [k for k in student.state_dict() if k.startswith(("model.0.", "model.1.")) and k.endswith("conv.weight")]
    epochs: dict[int, dict[str, torch.Tensor]] = {}

    def keep(epoch: int, state: dict[str, torch.Tensor]) -> None:
        epochs.setdefault(epoch, state)  # ultralytics reports the last epoch twice

    fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path, seed=0, from_scratch=True, on_weights=keep)
    assert stem and all(not torch.equal(epochs[1][k], epochs[2][k]) for k in stem)


def test_warm_up_makes_a_fine_tunes_first_steps_small(tmp_path) -> None:
    """A fine-tune's first full-rate step can wreck a trained student; warm-up ramps up to it, and
    the biases start from zero too (not ultralytics' 0.1, which suits random weights only)."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=3, nominal_batch=4)  # an optimizer step every batch
    before = {k: v.clone() for k, v in student.state_dict().items() if k.endswith(("weight", "bias"))}

    def first_epoch_moves(warmup_epochs: float, name: str) -> dict[str, float]:
        moved: dict[str, float] = {}

        def keep(epoch: int, state: dict[str, torch.Tensor]) -> None:
            if epoch == 1:
                for suffix in ("weight", "bias"):
                    keys = [k for k in before if k.endswith(suffix)]
                    moved[suffix] = max((state[k].float() - before[k]).abs().max().item() for k in keys)

        tuned = cfg.model_copy(update={"warmup_epochs": warmup_epochs})
        fine_tune(student, frames(8), frames(2, 1), tuned, tmp_path / name, seed=0, on_weights=keep)
        return moved

    cold, warm = first_epoch_moves(0.0, "cold"), first_epoch_moves(2.0, "warm")
    assert warm["weight"] < 0.5 * cold["weight"]
    assert warm["bias"] < 0.5 * cold["bias"]


def test_an_undone_epoch_puts_the_weights_back_and_the_next_steps_are_half_as_long(tmp_path) -> None:
    """training.backtrack's mechanics (the worker decides, fine_tune acts): after an undone epoch
    training goes on from the weights before it, with its momentum dropped and half the rate.
    Steps are clipped (ultralytics: gradient norm 10), so on a fresh model an epoch moves the
    weights about lr x its steps: against the same run without undos, each epoch after an
    undo moves them about half as far again."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=3, nominal_batch=4)  # an optimizer step every batch
    start = {k: v.clone().float() for k, v in student.state_dict().items() if k.endswith(("weight", "bias"))}

    def moves(undo: bool, name: str) -> list[float]:
        """How far each epoch moved the weights from where it started."""
        origin, moved = dict(start), {}

        def on_weights(epoch: int, state: dict[str, torch.Tensor]) -> bool:
            if epoch not in moved:  # ultralytics reports the last epoch twice
                moved[epoch] = sum(((state[k].float() - origin[k]) ** 2).sum().item() for k in origin) ** 0.5
                if not undo:
                    origin.update({k: state[k].float().clone() for k in start})
            return not undo

        fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path / name, seed=0, on_weights=on_weights)
        return [moved[e] for e in sorted(moved)]

    undone, kept = moves(True, "undo"), moves(False, "keep")
    assert len(undone) == len(kept) == 3
    assert undone[0] == pytest.approx(kept[0])  # the same first epoch
    for epoch in (1, 2):
        halved = (undone[epoch] / undone[epoch - 1]) / (kept[epoch] / kept[epoch - 1])
        assert 0.35 < halved < 0.7, (undone, kept)


def test_momentum_reaches_the_optimizer_and_lengthens_a_short_fine_tunes_steps(tmp_path) -> None:
    """training.momentum is the optimizer's: with ultralytics' 0.937 each step of a short
    fine-tune adds most of the steps before it, so every epoch moves the weights about twice as
    far or more as plain SGD's same epoch (two steps an epoch here)."""
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=3, nominal_batch=4)  # an optimizer step every batch
    start = {k: v.clone().float() for k, v in student.state_dict().items() if k.endswith(("weight", "bias"))}

    def moves(momentum: float) -> list[float]:
        """How far each epoch moved the weights from where it started."""
        origin, moved = dict(start), {}

        def on_weights(epoch: int, state: dict[str, torch.Tensor]) -> None:
            if epoch not in moved:  # ultralytics reports the last epoch twice
                moved[epoch] = sum(((state[k].float() - origin[k]) ** 2).sum().item() for k in origin) ** 0.5
                origin.update({k: state[k].float().clone() for k in start})

        tuned = cfg.model_copy(update={"momentum": momentum})
        fine_tune(student, frames(8), frames(2, 1), tuned, tmp_path / f"m{momentum}", seed=0, on_weights=on_weights)
        return [moved[e] for e in sorted(moved)]

    with_momentum, plain = moves(0.937), moves(0.0)
    assert len(with_momentum) == len(plain) == 3
    assert all(m > 1.8 * p for m, p in zip(with_momentum, plain, strict=True)), (with_momentum, plain)
