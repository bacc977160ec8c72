"""The hierarchical change-point detector on synthetic embedding streams, and its evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_trainer.bootstrap import read_frames
from edgesync.assets import vtest_path
from edgesync.changepoint import (
    IMAGE_DIMS,
    MODEL_DIMS,
    ChangePointDetector,
    chi2_quantile,
    frame_embedding,
    image_statistics,
)
from edgesync.config import ChangePointConfig
from edgesync.drift import DriftApplier, DriftSchedule
from edgesync_bench.changepoints import match, read_truth

FPS = 10.0
DIMS = 12


def stream(seconds: float, level, seed: int = 0, noise: float = 0.02):
    """(t, embedding) pairs: level(t) plus white noise, at FPS."""
    rng = np.random.default_rng(seed)
    for i in range(int(seconds * FPS)):
        t = i / FPS
        yield t, np.asarray(level(t), dtype=np.float64) + rng.normal(0, noise, DIMS)


def detections(level, seconds: float, cfg: ChangePointConfig | None = None, **kw) -> list[float]:
    detector = ChangePointDetector(cfg or ChangePointConfig())
    return [p.t_s for t, x in stream(seconds, level, **kw) if (p := detector.update(t, x)) is not None]


BASE = np.full(DIMS, 0.5)


def test_a_step_is_detected_within_a_few_seconds() -> None:
    fired = detections(lambda t: BASE + (0.2 if t >= 60 else 0.0), 120)
    assert len(fired) == 1 and 60 <= fired[0] <= 63


def test_a_gradual_ramp_is_one_change_point_not_several() -> None:
    ramp = lambda t: BASE + 0.3 * min(1.0, max(0.0, (t - 60) / 20))  # noqa: E731
    fired = detections(ramp, 150)
    assert len(fired) == 1 and 60 <= fired[0] <= 70


def test_stationary_noise_raises_no_alarm_over_an_hour() -> None:
    assert detections(lambda t: BASE, 3600, seed=3) == []


def test_a_replayed_clip_jumping_back_is_not_a_scene_change() -> None:
    # the same scene whose content drifts a little through the clip and jumps back every 80 s
    wobble = lambda t: BASE + 0.02 * ((t % 80) / 80 - 0.5) * np.cos(np.arange(DIMS))  # noqa: E731
    assert detections(wobble, 600) == []


def test_scenes_that_come_and_go_are_each_detected() -> None:
    level = lambda t: BASE + (0.25 if (t // 90) % 2 else 0.0)  # noqa: E731
    fired = detections(level, 450)
    assert [round(f / 90) for f in fired] == [1, 2, 3, 4]


def test_the_change_point_signs_both_scenes_with_image_statistics() -> None:
    detector = ChangePointDetector(ChangePointConfig())
    rng = np.random.default_rng(0)
    dark, bright = np.full((48, 64, 3), 40, np.uint8), np.full((48, 64, 3), 200, np.uint8)
    point = None
    for i in range(900):
        t = i / FPS
        frame = (bright if t >= 60 else dark) + rng.integers(0, 8, (48, 64, 3), dtype=np.uint8)
        point = detector.update(t, frame_embedding(frame, np.array([0.9, 0.4]))) or point
    assert point is not None and 60 <= point.t_s <= 63
    assert np.mean(point.signature[:3]) > np.mean(point.previous_signature[:3])  # brighter
    assert 0 < point.confidence < 1
    assert len(point.signature) == len(image_statistics(dark))


def test_threshold_comes_from_the_false_alarm_rate() -> None:
    assert chi2_quantile(0.05, 1) == pytest.approx(3.84, rel=0.05)
    assert chi2_quantile(0.05, 10) == pytest.approx(18.31, rel=0.02)
    strict = ChangePointDetector(ChangePointConfig(false_alarms_per_hour=0.01))
    loose = ChangePointDetector(ChangePointConfig(false_alarms_per_hour=10))
    assert strict._threshold(DIMS) > loose._threshold(DIMS)


def test_time_constants_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="fast_s < medium_s < slow_s"):
        ChangePointConfig(fast_s=20, medium_s=10)


# ---------------------------------------------------------------- evaluation


def test_matching_is_one_to_one_within_the_tolerance() -> None:
    result = match([61.0, 62.0, 130.0, 200.5], [60.0, 120.0, 200.0], tolerance_s=5, duration_s=600)
    assert result["delays_s"] == [1.0, 0.5]  # 120 missed (130 is too late); 62 is a second firing
    assert result["precision"] == pytest.approx(0.5) and result["recall"] == pytest.approx(2 / 3)
    assert result["false_alarms"] == 2 and result["false_alarms_per_10min"] == pytest.approx(2.0)
    assert result["delay_s_median"] == pytest.approx(0.75)


def test_no_boundaries_and_no_detections_is_perfect() -> None:
    result = match([], [], tolerance_s=5, duration_s=600)
    assert (result["precision"], result["recall"], result["f1"], result["false_alarms"]) == (1.0, 1.0, 1.0, 0)


def test_truth_files_name_the_bad_line(tmp_path) -> None:
    good = tmp_path / "cuts.txt"
    good.write_text("# scene cuts\n12.5\n\n3\n")
    assert read_truth(good) == [3.0, 12.5]
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0\nnoon\n")
    from edgesync.errors import InvalidInput

    with pytest.raises(InvalidInput, match="bad.txt:2"):
        read_truth(bad)


def test_a_noisy_defocused_sensor_on_real_footage_is_detected_both_ways() -> None:
    # sensor noise then defocus (camera 3 of four-cameras.yaml) barely moves a thumbnail's colour
    # and brightness: sharpness at the frame's own resolution is what shows it
    frames = read_frames(str(vtest_path()), seconds=4.0, count=40)  # its first 40 frames, at 10 fps
    segments = [
        {"until_s": 60, "condition": "clean"},
        {"until_s": 120, "condition": ["noise", "blur"], "strength": 0.6},
        {"until_s": 180, "condition": "clean"},
    ]
    schedule = DriftSchedule.model_validate({"segments": segments})
    drift = DriftApplier(schedule, seed=3)
    detector = ChangePointDetector(ChangePointConfig())
    fired = []
    for i in range(180 * 5):  # 5 looks a second, as on the edge
        t = i / 5
        image = drift.apply(frames[i % len(frames)], t, i)
        if (point := detector.update(t, frame_embedding(image, np.array([0.8])))) is not None:
            fired.append(point.t_s)
    assert [round(t / 60) for t in fired] == [1, 2]
    assert all(0 <= t - 60 * round(t / 60) <= 3 for t in fired)


# ---------------------------------------------------------------- model swaps

EMBED = IMAGE_DIMS + 2  # image statistics, then the model's confidence statistics


def swapping_detections(step: float, swaps_at: list[float], shift: float = 0.3, seconds: float = 120) -> list[float]:
    """A stream of real embedding size: the image part steps by `step` at 60 s (0 for none); every
    swap moves the confidence part by `shift`, to a new model's level, as a retrained model does."""
    detector = ChangePointDetector(ChangePointConfig())
    rng = np.random.default_rng(0)
    fired, swaps, confidence = [], list(swaps_at), np.full(2, 0.5)
    for i in range(int(seconds * 5)):  # 5 looks a second, as on the edge
        t = i / 5
        if swaps and t >= swaps[0]:
            swaps.pop(0)
            confidence = confidence + shift
            detector.reanchor(MODEL_DIMS)
        image = np.full(IMAGE_DIMS, 0.5) + (step if t >= 60 else 0.0)
        x = np.concatenate([image, confidence]) + rng.normal(0, 0.02, EMBED)
        if (point := detector.update(t, x)) is not None:
            fired.append(point.t_s)
    return fired


def test_a_scene_change_during_a_model_swap_is_still_detected() -> None:
    # the swap lands half a second into the change, before it is confirmed: re-anchoring the image
    # statistics too would take most of the step for the old scene and miss it
    # (the new model is as confident as the old, so only the scene can fire)
    fired = swapping_detections(0.03, swaps_at=[60.6], shift=0.0)
    assert len(fired) == 1 and 60 <= fired[0] <= 63


def test_model_swaps_alone_raise_no_alarm() -> None:
    assert swapping_detections(0.0, swaps_at=[30, 45, 60, 61, 75, 90]) == []
