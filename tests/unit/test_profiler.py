"""The job profiler's learning-curve prediction, its early stop, and its choice of setting."""

from __future__ import annotations

import pytest

from cloud_trainer.profiler import (
    LearningCurve,
    SettingProbe,
    choose_setting,
    probe_images,
    profile_candidates,
    profile_evaluations,
    profile_image_epochs,
    recipe,
    relative_cost,
)
from edgesync.config import TrainingConfig, TrainingSetting


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


def test_gain_to_come_is_the_prediction_beyond_the_best_epoch_so_far() -> None:
    assert curve(0.2, [0.3]).gain_to_come() is None
    assert curve(0.1, [0.15, 0.2], planned=6).gain_to_come() == pytest.approx(0.05 * 4)  # climbing
    assert curve(0.3, [0.4, 0.35]).gain_to_come() == 0.0  # past its best: nothing more predicted
    assert curve(0.3, [0.2, 0.1]).gain_to_come() == 0.0  # never below 0


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


# ---------------------------------------------------------------- which setting


def probe(name: str, points: list[float], cost: float = 1.0, before: float = 0.3, **fields) -> SettingProbe:
    return SettingProbe(TrainingSetting(name=name, **fields), before, points, 10, 10, 20, cost)


def test_a_probe_epoch_on_half_the_frames_is_half_an_epoch_of_the_job() -> None:
    p = probe("a", [0.35, 0.4])  # steady +0.05 per probe epoch, 10 job epochs = 20 probe epochs
    assert p.fraction == 0.5
    assert p.predicted_gain == pytest.approx(min(0.1 + 0.05 * 18, 0.7))
    assert probe("b", [0.31, 0.32]).predicted_gain == pytest.approx(0.02 + 0.01 * 18)


def test_the_setting_with_the_best_gain_per_compute_is_chosen() -> None:
    steady = probe("steady", [0.32, 0.34])
    faster = probe("faster", [0.35, 0.4])
    assert choose_setting([steady, faster]) is faster
    dear = probe("dear", [0.35, 0.4], cost=4.0, imgsz=640)  # the same curve at four times the pixels
    assert choose_setting([steady, dear]) is steady
    assert dear.image_epochs == 10 * 2 * 4.0


def test_the_configured_setting_stays_when_no_candidate_predicts_a_gain() -> None:
    first, other = probe("first", [0.2, 0.1]), probe("other", [0.25, 0.2])
    assert choose_setting([first, other]) is first
    tie = probe("tie", [0.32, 0.34])
    assert choose_setting([probe("default", [0.32, 0.34]), tie]).setting.name == "default"


def test_probe_work_counts_every_candidate_at_its_pixel_cost() -> None:
    cfg = TrainingConfig(
        imgsz=320,
        profile_epochs=2,
        profile_fraction=0.25,
        candidates=[TrainingSetting(name="as-is"), TrainingSetting(name="big", imgsz=640)],
    )
    assert relative_cost(cfg, cfg.candidates[1]) == 4.0
    assert probe_images(cfg, 40) == 10 and probe_images(cfg, 3) == 2
    assert profile_image_epochs(cfg, 40) == 10 * 2 * (1 + 4)
    assert profile_image_epochs(TrainingConfig(candidates=[TrainingSetting(name="only")]), 40) == 0.0


def test_candidates_need_unique_names_and_apply_only_what_they_set() -> None:
    with pytest.raises(ValueError, match="unique"):
        TrainingConfig(candidates=[TrainingSetting(name="a"), TrainingSetting(name="a", lr0=0.1)])
    cfg = TrainingConfig(lr0=0.01, imgsz=320)
    tuned = cfg.with_setting(TrainingSetting(name="gentle", lr0=0.002, freeze_bn=True))
    assert (tuned.lr0, tuned.imgsz, tuned.freeze_bn, cfg.freeze_bn) == (0.002, 320, True, False)
    adamw = cfg.with_setting(TrainingSetting(name="adamw", optimizer="AdamW", lr0=0.0005, warmup_epochs=1))
    assert (adamw.optimizer, adamw.lr0, adamw.warmup_epochs, cfg.optimizer) == ("AdamW", 0.0005, 1.0, "SGD")


def test_candidates_that_differ_only_in_epochs_share_one_probe_and_shorter_wins_when_the_curve_saturates() -> None:
    cfg = TrainingConfig(
        epochs=10,
        profile_epochs=2,
        candidates=[TrainingSetting(name="long"), TrainingSetting(name="short", epochs=4)],
    )
    assert recipe(cfg.candidates[0]) == recipe(cfg.candidates[1])
    assert profile_image_epochs(cfg, 20) == 10 * 2  # one probe of 10 images for both
    assert profile_evaluations(cfg) == 2
    points = [0.5, 0.6]  # +0.2 then +0.1 over 0.3: saturating
    long = SettingProbe(cfg.candidates[0], 0.3, points, 10, 10, 20, 1.0, 10)
    short = SettingProbe(cfg.candidates[1], 0.3, points, 4, 10, 20, 1.0, 10, probed=False)
    assert short.cost == pytest.approx(0.4) and short.image_epochs == 0.0
    assert long.predicted_gain > short.predicted_gain > 0
    assert choose_setting([long, short]) is short  # more gain per compute
    steady = [0.31, 0.34]  # +0.01 then +0.03: no sign of saturating, so the gain grows with epochs
    assert choose_setting(
        [SettingProbe(cfg.candidates[0], 0.3, steady, 10, 10, 20, 1.0, 10),
         SettingProbe(cfg.candidates[1], 0.3, steady, 4, 10, 20, 1.0, 10, probed=False)]
    ).setting.name == "long"  # fmt: skip


def test_profiling_runs_one_probe_per_recipe_on_one_subsample_without_distillation() -> None:
    cfg = TrainingConfig(
        epochs=10,
        profile_epochs=2,
        profile_fraction=0.5,
        distill={"mode": "attention"},
        candidates=[
            TrainingSetting(name="default"),
            TrainingSetting(name="short", epochs=4),
            TrainingSetting(name="gentle", lr0=0.002),
        ],
    )
    runs: list[tuple[float, list[int], int, str]] = []

    def run_probe(probe_cfg: TrainingConfig, frames: list[int], epochs: int) -> list[float]:
        runs.append((probe_cfg.lr0, frames, epochs, probe_cfg.distill.mode))
        return [0.5, 0.6] if probe_cfg.lr0 == cfg.lr0 else [0.31, 0.32]

    probes = profile_candidates(cfg, list(range(20)), 0.3, 8, run_probe, key="job-1")
    assert [(lr0, epochs, mode) for lr0, _, epochs, mode in runs] == [(cfg.lr0, 2, "off"), (0.002, 2, "off")]
    assert runs[0][1] == runs[1][1] and len(runs[0][1]) == 10 and set(runs[0][1]) <= set(range(20))
    assert [p.probed for p in probes] == [True, False, True]
    assert probes[1].points is probes[0].points and [p.planned_epochs for p in probes] == [8, 4, 8]
    assert choose_setting(probes).setting.name == "short"  # the curve saturates: half the epochs, most of the gain
    again: list[tuple] = []
    profile_candidates(cfg, list(range(20)), 0.3, 8, lambda c, f, e: again.append(f) or [0.4, 0.4], key="job-1")
    assert again[0] == runs[0][1], "a repeated or resumed job probes the same frames"


def test_a_curve_rises_while_its_latest_epoch_beats_the_start_and_every_earlier_epoch() -> None:
    assert not curve(0.5, []).rising()
    assert curve(0.5, [0.6]).rising() and curve(0.5, [0.55, 0.6]).rising()
    assert not curve(0.5, [0.4]).rising()  # below the start
    assert not curve(0.5, [0.7, 0.6]).rising() and not curve(0.5, [0.7, 0.7]).rising()
