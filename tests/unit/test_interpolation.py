"""StudentModel.interpolated: the WiSE-FT candidate (training.interpolate) between two students."""

from __future__ import annotations

import pytest
import torch

from edgesync.errors import InvalidInput
from edgesync.student import StudentModel, batchnorm_layers

CLASSES = ["person", "car"]


def _model(seed: int, classes: list[str] = CLASSES) -> StudentModel:
    torch.manual_seed(seed)
    model = StudentModel.fresh(classes, 64)
    with torch.no_grad():  # fresh batch-norm statistics are all 0 and 1: give them something to mix
        for layer in batchnorm_layers(model.model):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
    return model


def test_every_floating_point_tensor_lies_the_share_of_the_way_and_counters_are_the_other_models() -> None:
    start, tuned = _model(1), _model(2)
    half = start.interpolated(tuned, 0.25).state_dict()
    a, b = start.state_dict(), tuned.state_dict()
    assert half.keys() == b.keys()
    for name, tensor in half.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, a[name] + 0.25 * (b[name] - a[name]))
        else:
            assert torch.equal(tensor, b[name])
    assert any("running_var" in name for name in half)


def test_the_ends_are_the_two_models_and_the_originals_are_untouched() -> None:
    start, tuned = _model(1), _model(2)
    before = start.encode()[1]
    assert start.interpolated(tuned, 0.0).encode()[1] == before
    assert start.interpolated(tuned, 1.0).encode()[1] == tuned.encode()[1]
    assert start.encode()[1] == before


def test_interpolating_with_a_share_outside_0_1_or_another_kind_of_model_is_refused() -> None:
    start = _model(1)
    with pytest.raises(InvalidInput, match="within 0..1, got 1.5"):
        start.interpolated(_model(2), 1.5)
    with pytest.raises(InvalidInput, match="cannot interpolate"):
        start.interpolated(_model(2, ["person"]), 0.5)
