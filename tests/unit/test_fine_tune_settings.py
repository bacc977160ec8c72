"""Fine-tuning settings the job profiler chooses between, on a real (tiny) ultralytics fine-tune."""

from __future__ import annotations

import torch
from synthetic import CLASSES, frames

from cloud_trainer.training import fine_tune
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
