"""Re-estimating a student's batch-norm statistics on frames of a new scene (AdaBN)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesync.student import StudentModel

CLASSES = ["person", "car"]


def _student() -> StudentModel:
    torch.manual_seed(0)
    return StudentModel.fresh(CLASSES, 64)


def _scene(level: int, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(level)
    return [np.clip(rng.normal(level, 20, (48, 64, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def _split(model: StudentModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(running statistics, every other tensor)."""
    state = model.state_dict()
    stats = {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}
    return stats, {k: v for k, v in state.items() if k not in stats}


def test_recalibrating_changes_only_the_running_statistics_of_a_copy() -> None:
    student = _student()
    stats, weights = _split(student)
    adapted = student.recalibrated(_scene(40))

    new_stats, new_weights = _split(adapted)
    assert all(torch.equal(weights[k], new_weights[k]) for k in weights)
    assert all(not torch.equal(stats[k], new_stats[k]) for k in stats)
    assert all(torch.equal(stats[k], v) for k, v in _split(student)[0].items())  # the original is untouched
    assert not any(m.training for m in adapted.model.modules())  # ready to serve
    assert adapted.predict(_scene(40, 1))[0].scores.shape[0] >= 0


def test_the_statistics_follow_the_scene_and_repeat_for_the_same_frames() -> None:
    student = _student()
    dark, bright = student.recalibrated(_scene(30)), student.recalibrated(_scene(200))
    first = "model.0.bn.running_mean"
    assert not torch.allclose(_split(dark)[0][first], _split(bright)[0][first])
    again = student.recalibrated(_scene(30))
    assert all(torch.equal(v, _split(again)[0][k]) for k, v in _split(dark)[0].items())


def test_a_weight_below_one_blends_the_new_statistics_with_the_old() -> None:
    student = _student()
    old, new = _split(student)[0], _split(student.recalibrated(_scene(60)))[0]
    half = _split(student.recalibrated(_scene(60), weight=0.5))[0]
    assert all(torch.allclose(half[k], (old[k] + new[k]) / 2, atol=1e-5) for k in old)


def test_recalibrating_on_no_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        _student().recalibrated([])
