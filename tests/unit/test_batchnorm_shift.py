"""Batch-norm running statistics that follow the optimizer's steps (cloud_trainer.batchnorm_shift)."""

from __future__ import annotations

import copy

import pytest
import torch
from synthetic import CLASSES, frames
from torch import nn

from cloud_trainer.batchnorm_shift import StepShift
from cloud_trainer.training import fine_tune
from edgesync.config import TrainingConfig
from edgesync.student import StudentModel


def conv_bn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.03), nn.ReLU(), nn.Conv2d(4, 2, 1))
    model.append(nn.BatchNorm2d(2, momentum=0.03))
    return model


def conv_moments(model: nn.Sequential, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of the first batch norm's input, the first convolution's output."""
    with torch.no_grad():
        x = model[0](images)
    return x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)


def test_a_step_moves_the_running_statistics_by_what_it_changed_in_the_last_batch() -> None:
    model = conv_bn().train()
    images = torch.rand(6, 3, 8, 8)
    shift = StepShift(model)
    shift.saw(images)
    model(images)  # the training forward: running statistics move a little, hooks record the batch's
    mean0, var0 = conv_moments(model, images)
    running_mean, running_var = model[1].running_mean.clone(), model[1].running_var.clone()
    tracked = model[1].num_batches_tracked.clone()
    with torch.no_grad():  # the "step": the first convolution's filters grow and gain a bias
        model[0].weight.mul_(1.5)
        model[0].bias.add_(0.2)
    shift.after_step()

    mean1, var1 = conv_moments(model, images)
    eps = model[1].eps
    torch.testing.assert_close(model[1].running_mean, running_mean + mean1 - mean0)
    torch.testing.assert_close(model[1].running_var, running_var * (var1 + eps) / (var0 + eps))
    assert torch.equal(model[1].num_batches_tracked, tracked)  # its forward pass trained nothing
    assert model[1].momentum == 0.03 and model.training
    assert shift.forward_images == 6


def test_the_ema_gets_the_share_of_the_correction_its_update_took_from_the_model() -> None:
    model = conv_bn().train()
    ema = copy.deepcopy(model)
    images = torch.rand(4, 3, 8, 8)
    shift = StepShift(model, ema)
    shift.saw(images)
    model(images)
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    before_model, before_ema = model[1].running_mean.clone(), ema[1].running_mean.clone()
    shift.after_step(ema_decay=0.75)
    moved_model = model[1].running_mean - before_model
    torch.testing.assert_close(ema[1].running_mean - before_ema, 0.25 * moved_model)
    assert moved_model.abs().max() > 0


def test_nothing_is_corrected_before_a_training_batch_was_seen() -> None:
    model = conv_bn().train()
    shift = StepShift(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shift.after_step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert shift.forward_images == 0


def test_an_ema_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="batch-norm layers"):
        StepShift(conv_bn(), nn.Sequential(nn.BatchNorm2d(4)))


@pytest.mark.parametrize("follow", [True, False])
def test_a_fine_tune_reports_the_forward_passes_the_correction_took(tmp_path, follow: bool) -> None:
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    cfg = TrainingConfig(imgsz=64, batch=4, epochs=2, nominal_batch=4, bn_follows_steps=follow)
    result = fine_tune(student, frames(8), frames(2, 1), cfg, tmp_path, seed=0)
    # an optimizer step after every batch of 4: 2 epochs x 2 batches, one batch forward each
    assert result.bn_shift_images == (16 if follow else 0)
