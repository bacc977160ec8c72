"""The job profiler's learning-curve prediction and its early stop."""

from __future__ import annotations

import pytest

from cloud_trainer.profiler import LearningCurve


def curve(before: float, points: list[float], planned: int = 10, patience: int = 3) -> LearningCurve:
    c = LearningCurve(before, planned, patience)
    for p in points:
        c.add(p)
    return c


def test_no_prediction_before_two_epochs() -> None:
    assert curve(0.2, []).predicted_gain() is None
    assert curve(0.2, [0.3]).predicted_gain() is None


def test_shrinking_improvements_saturate_geometrically() -> None:
    c = curve(0.2, [0.4, 0.5], planned=10)  # +0.2 then +0.1: each epoch adds half the one before
    expected = 0.3 + 0.1 * 0.5 * (1 - 0.5**8) / (1 - 0.5)  # reached + the series over 8 more epochs
    assert c.predicted_gain() == pytest.approx(expected)
    assert c.first_prediction == pytest.approx(expected)  # made at the second epoch and kept
    c.add(0.52)
    assert c.first_prediction == pytest.approx(expected)


def test_steady_improvement_extrapolates_linearly_but_never_past_a_perfect_score() -> None:
    assert curve(0.1, [0.15, 0.2], planned=6).predicted_gain() == pytest.approx(0.1 + 0.05 * 4)
    assert curve(0.5, [0.7, 0.9], planned=10).predicted_gain() == pytest.approx(0.5)


def test_a_curve_that_does_not_improve_predicts_the_best_it_reached() -> None:
    assert curve(0.3, [0.35, 0.3]).predicted_gain() == pytest.approx(0.05)
    assert curve(0.3, [0.2, 0.1]).predicted_gain() == pytest.approx(-0.1)


def test_one_step_after_none_is_not_extrapolated() -> None:
    # the live demo's curve: the first epoch left the held-out score where it was, the second
    # stepped up one frame's worth; extrapolating that step predicted +69 points
    assert curve(0.19, [0.19, 0.266]).predicted_gain() == pytest.approx(0.076)


def test_stops_after_patience_epochs_without_improvement() -> None:
    assert curve(0.3, [0.4, 0.38, 0.39]).stop_reason() is None  # 2 epochs since the best
    reason = curve(0.3, [0.4, 0.38, 0.39, 0.37]).stop_reason()
    assert reason is not None and "3 epochs" in reason
    assert curve(0.3, [0.1, 0.2, 0.25]).stop_reason() is not None  # never above the start
    assert curve(0.3, [0.4, 0.38, 0.39, 0.45]).stop_reason() is None  # improving again
    assert curve(0.3, [0.1, 0.1, 0.1, 0.1], patience=0).stop_reason() is None  # patience 0: never


def test_early_stopping_is_off_unless_configured() -> None:
    from edgesync.config import TrainingConfig

    assert TrainingConfig().patience == 0
