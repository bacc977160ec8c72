"""Replay frames in the current scene's colours: histogram matching, and the worker using it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import cloud_trainer.worker as worker_module
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.replay_style import channel_histograms, matched, matching_lut, restyled_replay
from cloud_trainer.state import MemoryStore
from cloud_trainer.training import FineTuneResult, LabelledFrame
from cloud_trainer.worker import TrainingWorker
from edgesync.config import TrainingConfig
from edgesync.student import StudentModel
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob

EDGE = "cam-1"


def _scene(seed: int, shape=(48, 64, 3)) -> np.ndarray:
    """A textured frame using most intensity levels."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (5, 5), 0)


def _night(image: np.ndarray) -> np.ndarray:
    """A darkening tone curve that differs by channel, as a night or a colour cast does."""
    levels = np.arange(256) / 255.0
    lut = np.stack([255 * levels**gamma * gain for gamma, gain in ((2.2, 0.5), (2.0, 0.4), (1.8, 0.3))])
    return cv2.merge([cv2.LUT(image[..., c], lut[c].round().astype(np.uint8)) for c in range(3)])


def test_matching_a_frame_to_its_own_histogram_leaves_it_as_it_is() -> None:
    image = _scene(0)
    assert np.array_equal(matched(image, channel_histograms([image])), image)


def test_a_tone_curve_seen_on_other_frames_is_carried_over_to_a_clean_one() -> None:
    fresh = [_night(_scene(seed)) for seed in range(1, 6)]  # the new scene, other frames of it
    clean = _scene(9)
    restyled = matched(clean, channel_histograms(fresh))
    error = np.abs(restyled.astype(int) - _night(clean)).mean()
    assert error < 2.0, f"mean error {error:.2f} levels"  # against 60+ levels before
    assert np.abs(clean.astype(int) - _night(clean)).mean() > 60


def test_the_lookup_table_is_monotone_and_never_leaves_the_reference_range() -> None:
    source = channel_histograms([_scene(3)])
    reference = np.zeros_like(source)
    reference[:, 100:121] = 1  # the target look uses levels 100-120 only
    lut = matching_lut(source, reference)
    assert lut.dtype == np.uint8 and lut.shape == (3, 256)
    assert np.all(np.diff(lut.astype(int), axis=1) >= 0)
    assert lut[:, source[0].nonzero()[0]].min() >= 100 and lut.max() <= 120


def test_replay_frames_keep_their_labels_and_names_and_stay_as_they_are_without_fresh_frames() -> None:
    box = Detection(1, 2, 30, 40, 0, 0.9)
    replay = [LabelledFrame(_scene(5), [box], "00000005")]
    fresh = [LabelledFrame(_night(_scene(6)), [], "00000006")]
    [restyled] = restyled_replay(replay, fresh)
    assert restyled.labels == [box] and restyled.name == "00000005"
    assert restyled.image.mean() < replay[0].image.mean() / 2
    assert restyled_replay(replay, []) == replay
    assert restyled_replay(replay, fresh, "as-is") == replay
    with pytest.raises(ValueError, match="'faded'"):
        restyled_replay(replay, fresh, "faded")


def test_histograms_name_an_image_they_cannot_count() -> None:
    with pytest.raises(ValueError, match="uint8"):
        channel_histograms([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="at least one"):
        channel_histograms([])


@pytest.mark.parametrize(("style", "replay_dark"), [("matched", True), ("as-is", False)])
def test_the_worker_trains_on_replay_frames_in_the_fresh_frames_colours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str, replay_dark: bool
) -> None:
    store, registry = MemoryStore(), ModelRegistry(tmp_path / "registry")
    model = StudentModel.fresh(["person"], 64)
    data, _ = model.encode()
    registry.register(EDGE, data, model.manifest(data))
    store.upsert_edge(EdgeInfo(edge_id=EDGE, class_names=["person"]))
    for i in range(30):  # 20 bright frames of the day, then 10 dark ones of the night
        image = _scene(i, (64, 64, 3)) if i < 20 else _night(_scene(i, (64, 64, 3)))
        jpeg = cv2.imencode(".png", image)[1].tobytes()
        store.add_sample(StoredSample(f"s{i}", EDGE, float(i), float(i), 1, 0.5, i, [], 64, 64), jpeg)
        store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
    seen: list[list[LabelledFrame]] = []

    def fine_tune(current, train, val, cfg, workdir, **kw):
        seen.append(train)
        return FineTuneResult(current, 1, len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: 0.5)
    cfg = TrainingConfig(max_fresh=10, min_fresh=4, min_heldout=2, replay_style=style)
    TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    [train] = seen
    fresh, replay = train[:8], train[8:]  # 10 fresh less 2 held out, then half as many replayed
    assert len(replay) == 4 and all(int(f.name) < 20 for f in replay)
    night = np.mean([f.image.mean() for f in fresh])
    assert all(f.labels == [Detection(5, 5, 30, 30, 0, 0.9)] for f in replay)
    for frame in replay:
        assert bool(abs(frame.image.mean() - night) < 10) == replay_dark, (style, frame.image.mean(), night)
