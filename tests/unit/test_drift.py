"""Drift schedules and transforms, on synthetic frames."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgesync.drift import (
    DEFAULT_STRENGTH,
    TRANSFORMS,
    DriftApplier,
    DriftSchedule,
    apply_conditions,
    frame_rng,
    load_schedule,
)
from edgesync.errors import ConfigError, InvalidInput
from edgesync_bench.cameras import load_cameras

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "drift"
RANDOM_CONDITIONS = ["night", "rain", "snow", "noise"]

ISSUE_EXAMPLE = """\
loop: true
segments:
  - {until_s: 60,  condition: clean}
  - {until_s: 120, condition: dusk,  strength: 0.6}
  - {until_s: 180, condition: night, strength: 0.8, ramp_s: 10}
  - {until_s: 240, condition: [fog, noise], strength: 0.7}
"""


def scene(h: int = 240, w: int = 320) -> np.ndarray:
    """A mid-grey plaza with a vertical gradient, texture and a few dark and bright 'objects'."""
    rng = np.random.default_rng(7)
    rows = np.linspace(90, 170, h)[:, None, None]
    frame = np.broadcast_to(rows, (h, w, 3)) + rng.normal(0, 12, (h, w, 3))
    frame[h // 4 : h // 4 + 40, w // 5 : w // 5 + 20] = (40, 40, 60)
    frame[h // 2 : h // 2 + 50, w // 2 : w // 2 + 25] = (30, 30, 30)
    frame[3 * h // 4 : 3 * h // 4 + 30, 3 * w // 4 : 3 * w // 4 + 60] = (220, 230, 235)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- parsing


def test_issue_example_parses_with_names_defaults_and_combined_conditions(tmp_path: Path) -> None:
    schedule = load_schedule(write(tmp_path, ISSUE_EXAMPLE))
    assert schedule.loop is True
    assert schedule.duration_s == 240
    assert schedule.names == ["clean", "dusk", "night", "fog+noise"]
    assert schedule.segments[3].condition == ("fog", "noise")
    assert schedule.segments[2].ramp_s == 10
    assert schedule.segments[0].strength == DEFAULT_STRENGTH == 0.7


def test_misspelt_key_is_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "segments:\n  - {until_s: 10, condition: clean}\n  - {until_s: 20, condition: fog, strenght: 0.5}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_schedule(path)
    assert str(path) in str(err.value)
    assert "segments.1.strenght" in str(err.value)
    assert "unknown key" in str(err.value)


@pytest.mark.parametrize("condition", ["nigth", "[fog, nosie]"])
def test_unknown_condition_is_config_error_naming_file_key_and_name(tmp_path: Path, condition: str) -> None:
    path = write(
        tmp_path,
        f"segments:\n  - {{until_s: 10, condition: clean}}\n  - {{until_s: 20, condition: {condition}}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_schedule(path)
    message = str(err.value)
    assert str(path) in message
    assert "segments.1.condition" in message
    assert ("'nigth'" in message) or ("'nosie'" in message)


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ("[{until_s: 20, condition: clean}, {until_s: 20, condition: fog}]", "must be greater"),
        (
            "[{until_s: 10, condition: clean}, {until_s: 15, condition: fog, ramp_s: 8}]",
            "longer than the segment",
        ),
        ("[{until_s: 10, condition: fog, strength: 1.5}]", "segments.0.strength"),
        ("[{until_s: 10, condition: [clean, fog]}]", "cannot be combined"),
        ("[]", "segments"),
    ],
)
def test_inconsistent_schedule_is_config_error(tmp_path: Path, segments: str, expected: str) -> None:
    path = write(tmp_path, f"segments: {segments}\n")
    with pytest.raises(ConfigError, match=expected) as err:
        load_schedule(path)
    assert str(path) in str(err.value)


def test_recurring_condition_gets_unique_name() -> None:
    schedule = DriftSchedule.model_validate(
        {
            "segments": [
                {"until_s": 10, "condition": "clean"},
                {"until_s": 20, "condition": "fog"},
                {"until_s": 30, "condition": "clean"},
                {"until_s": 40, "condition": "clean"},
            ]
        }
    )
    assert schedule.names == ["clean", "fog", "clean#2", "clean#3"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_schedule_parses(path: Path) -> None:
    schedule = load_schedule(path)
    assert schedule.duration_s > 0
    assert len(set(schedule.names)) == len(schedule.names)


def test_shipped_schedules_have_the_promised_shape() -> None:
    demo, dev, smoke = (load_schedule(CONFIGS / f"{name}.yaml") for name in ("demo", "dev", "smoke"))
    assert demo.loop and demo.names == ["clean", "dusk", "night", "fog"] and demo.boundaries()[1] == 60
    assert dev.duration_s >= 360 and any(seg.ramp_s > 0 for seg in dev.segments)
    assert {"clean", "dusk", "night", "fog", "rain"} <= set(dev.names) and dev.names[-1] == "clean#2"
    assert smoke.duration_s == 40 and smoke.boundaries() == [0, 10, 25]


# ---------------------------------------------------------------- schedule lookup


def test_segment_at_switches_exactly_at_boundaries_and_holds_after_the_end(tmp_path: Path) -> None:
    schedule = load_schedule(write(tmp_path, ISSUE_EXAMPLE))
    assert schedule.boundaries() == [0.0, 60.0, 120.0, 180.0]
    assert schedule.segment_at(0.0)[0] == 0
    assert schedule.segment_at(59.999)[0] == 0
    assert schedule.segment_at(60.0)[0] == 1
    assert schedule.segment_at(180.0)[1].name == "fog+noise"
    assert schedule.segment_at(1000.0)[0] == 3
    with pytest.raises(InvalidInput, match="stream time"):
        schedule.segment_at(-1.0)


def test_applier_reports_condition_by_segment_name(tmp_path: Path) -> None:
    applier = DriftApplier(load_schedule(write(tmp_path, ISSUE_EXAMPLE)), seed=3)
    assert [applier.condition_at(t) for t in (0, 60, 125, 239)] == ["clean", "dusk", "night", "fog+noise"]


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_strength_zero_is_identity_and_input_is_untouched(name: str) -> None:
    frame = scene()
    before = frame.copy()
    out = TRANSFORMS[name](frame, 0.0, frame_rng(0, 0, name))
    assert out is not frame
    np.testing.assert_array_equal(out, before)
    TRANSFORMS[name](frame, 1.0, frame_rng(0, 0, name))
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_same_seed_and_frame_give_identical_pixels(name: str) -> None:
    frame = scene()
    a = apply_conditions(frame, name, 0.7, seed=5, frame_index=11)
    b = apply_conditions(frame, name, 0.7, seed=5, frame_index=11)
    assert a.dtype == np.uint8 and a.shape == frame.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", RANDOM_CONDITIONS)
def test_different_seeds_or_frames_give_different_patterns(name: str) -> None:
    frame = scene()
    base = apply_conditions(frame, name, 0.7, seed=1, frame_index=4)
    assert not np.array_equal(base, apply_conditions(frame, name, 0.7, seed=2, frame_index=4))
    assert not np.array_equal(base, apply_conditions(frame, name, 0.7, seed=1, frame_index=5))


@pytest.mark.parametrize("name", [n for n in TRANSFORMS if n != "clean"])
def test_every_condition_changes_the_frame(name: str) -> None:
    frame = scene()
    out = apply_conditions(frame, name, 0.7)
    assert np.abs(out.astype(int) - frame).mean() > 1.0


def test_night_darkens_strongly_but_objects_stay_visible() -> None:
    frame = scene()
    out = apply_conditions(frame, "night", 0.8).astype(float)
    assert out.mean() < 0.3 * frame.mean()
    h, w = frame.shape[:2]
    bright = out[3 * h // 4 : 3 * h // 4 + 30, 3 * w // 4 : 3 * w // 4 + 60].mean()
    dark = out[h // 2 : h // 2 + 50, w // 2 : w // 2 + 25].mean()
    assert bright - dark > 20  # the bright object still stands out from the dark one
    assert out[..., 0].mean() > out[..., 2].mean()  # blue tint


def test_stronger_night_is_darker() -> None:
    frame = scene()
    means = [apply_conditions(frame, "night", s).mean() for s in (0.2, 0.5, 0.8, 1.0)]
    assert means == sorted(means, reverse=True)


def test_fog_reduces_contrast_more_further_up_the_frame() -> None:
    frame = scene()
    out = apply_conditions(frame, "fog", 0.7).astype(float)
    assert out.std() < 0.7 * frame.std()
    assert out.mean() > frame.mean()  # haze is bright
    h = frame.shape[0]
    top_loss = out[: h // 3].std() / frame[: h // 3].std()
    bottom_loss = out[-h // 3 :].std() / frame[-h // 3 :].std()
    assert top_loss < bottom_loss


def test_combined_conditions_apply_in_order() -> None:
    frame = scene()
    expected = TRANSFORMS["noise"](TRANSFORMS["fog"](frame, 0.6, frame_rng(9, 2, "fog")), 0.6, frame_rng(9, 2, "noise"))
    np.testing.assert_array_equal(apply_conditions(frame, ["fog", "noise"], 0.6, seed=9, frame_index=2), expected)


def test_bad_frames_and_strengths_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        apply_conditions(scene().astype(np.float32), "fog", 0.5)
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        apply_conditions(scene()[..., 0], "fog", 0.5)
    with pytest.raises(InvalidInput, match="within 0..1"):
        apply_conditions(scene(), "fog", 1.5)
    with pytest.raises(InvalidInput, match="unknown drift condition"):
        apply_conditions(scene(), "smog", 0.5)


# ---------------------------------------------------------------- applier


def ramp_schedule() -> DriftSchedule:
    return DriftSchedule.model_validate(
        {
            "segments": [
                {"until_s": 10, "condition": "clean"},
                {"until_s": 30, "condition": "night", "strength": 0.8, "ramp_s": 10},
            ]
        }
    )


def test_ramp_blends_monotonically_from_previous_segment() -> None:
    applier = DriftApplier(ramp_schedule(), seed=0)
    frame = scene()
    night = apply_conditions(frame, "night", 0.8, seed=0, frame_index=3)
    outputs = [applier.apply(frame, t, frame_index=3) for t in np.arange(10.0, 22.0, 1.0)]
    np.testing.assert_array_equal(outputs[0], frame)  # ramp starts at the previous segment's frame
    np.testing.assert_array_equal(outputs[-1], night)  # and ends at this one's
    distance = [np.abs(out.astype(int) - frame).mean() for out in outputs]
    assert all(b >= a for a, b in zip(distance, distance[1:], strict=False))
    assert distance[5] < distance[-1]


def test_ramp_on_first_segment_fades_in_from_the_clean_frame() -> None:
    schedule = DriftSchedule.model_validate({"segments": [{"until_s": 10, "condition": "fog", "ramp_s": 4}]})
    frame = scene()
    applier = DriftApplier(schedule)
    np.testing.assert_array_equal(applier.apply(frame, 0.0, 0), frame)
    np.testing.assert_array_equal(applier.apply(frame, 4.0, 0), apply_conditions(frame, "fog", DEFAULT_STRENGTH))


def test_applier_returns_new_frame_and_leaves_input_unchanged() -> None:
    applier = DriftApplier(ramp_schedule(), seed=1)
    frame = scene()
    before = frame.copy()
    clean = applier.apply(frame, 1.0, 0)
    assert clean is not frame
    np.testing.assert_array_equal(clean, before)
    applier.apply(frame, 25.0, 0)
    np.testing.assert_array_equal(frame, before)


# ---------------------------------------------------------------- speed


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_condition_is_fast_on_a_768x576_frame(name: str) -> None:
    frame = scene(576, 768)
    TRANSFORMS[name](frame, 0.7, frame_rng(0, 0, name))  # build per-shape caches
    times = []
    for i in range(5):
        start = time.perf_counter()
        TRANSFORMS[name](frame, 0.7, frame_rng(0, i, name))
        times.append(time.perf_counter() - start)
    assert sorted(times)[2] < 0.050, f"{name}: median {sorted(times)[2] * 1000:.1f} ms"


@pytest.mark.parametrize("path", sorted((CONFIGS.parent / "bench").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_cameras_file_names_schedules_that_parse(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIGS.parents[1])  # the files name their schedules from the repository root
    cameras = load_cameras(path).cameras
    assert len(cameras) == 4
    for camera in cameras:
        schedule = load_schedule(camera.drift)
        assert schedule.loop and schedule.names[0] == "clean"  # the bootstrap's own scene comes first
        assert len(set(schedule.names)) == len(schedule.names)
