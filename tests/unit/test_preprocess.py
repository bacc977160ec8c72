"""How a model preprocesses frames: auto levels, carried in its manifest, applied where it predicts and trains."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cloud_trainer.training as training_module
from cloud_trainer.training import LabelledFrame, fine_tune
from edgesync.config import TrainingConfig
from edgesync.errors import InvalidInput
from edgesync.preprocess import auto_levels, preprocessed
from edgesync.student import StudentModel
from edgesync.types import Detection, ModelManifest, model_key
from edgesync.wire import manifest_from_pb, manifest_to_pb

CLASSES = ["person", "car"]


def _scene(low: int, high: int, seed: int = 0) -> np.ndarray:
    """A frame whose channels span low..high, each with its own offset (a cast)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(low, high + 1, (48, 64, 3)).astype(np.uint8)
    frame[..., 2] = np.clip(frame[..., 2].astype(int) + 10, 0, 255)
    return frame


def test_auto_levels_stretches_each_channel_of_a_dark_frame_to_the_full_range() -> None:
    dark = _scene(5, 45)
    out = auto_levels(dark)
    for channel in range(3):
        low, high = np.percentile(out[..., channel], (0.5, 99.5))
        assert low <= 3 and high >= 252, (channel, low, high)
    # the order of levels is kept: brighter stays brighter
    flat = dark[..., 0].ravel().astype(int)
    assert np.all(np.diff(out[..., 0].ravel()[np.argsort(flat, kind="stable")].astype(int)) >= 0)


def test_auto_levels_counts_every_fourth_pixel_of_every_fourth_row() -> None:
    # a frame whose sampled pixels are all dark and whose other pixels are all bright: the stretch
    # follows the sampled ones only (a cheap count, not the whole frame's), on any frame size
    for height, width in ((48, 64), (47, 66)):
        frame = np.full((height, width, 3), 200, np.uint8)
        sampled = frame[::4, ::4]
        sampled[:] = (np.arange(sampled.shape[0] * sampled.shape[1]) % 40).reshape(sampled.shape[:2])[..., None]
        out = auto_levels(frame)
        assert out.shape == frame.shape
        assert np.all(out[1::4, 1::4] == 255), (height, width)  # above the sampled range: saturated
    assert auto_levels(np.zeros((3, 5, 3), np.uint8)).shape == (3, 5, 3)  # too small to sample: counted whole
    view = _scene(5, 45)[:, ::2]  # not contiguous
    assert np.array_equal(auto_levels(view), auto_levels(np.ascontiguousarray(view)))


def test_auto_levels_leaves_a_full_range_frame_and_a_flat_one_as_they_are() -> None:
    full = _scene(0, 255)
    full[:8], full[-8:] = 0, 255  # more than the clipped share of pixels at either end
    assert np.array_equal(auto_levels(full), full)
    grey = np.full((32, 32, 3), 90, np.uint8)
    assert np.array_equal(auto_levels(grey), grey)


def test_auto_levels_names_what_it_cannot_take() -> None:
    with pytest.raises(InvalidInput, match=r"\(32, 32\) uint8"):
        auto_levels(np.zeros((32, 32), np.uint8))
    with pytest.raises(InvalidInput, match="unknown preprocessing 'gamma'"):
        preprocessed([_scene(0, 255)], "gamma")
    frames = [_scene(0, 255)]
    assert preprocessed(frames, "none") is frames


def test_the_manifest_carries_the_preprocessing_through_json_and_the_wire() -> None:
    plain = ModelManifest(3, 2, "ab" * 32, 10, "yolov8n.yaml", ("person", "car"), 320)
    assert "preprocess" not in plain.to_json()  # manifests from before it read (and sign) the same
    levelled = replace(plain, preprocess="auto-levels")
    assert ModelManifest.from_json(levelled.to_json()).preprocess == "auto-levels"
    assert manifest_from_pb(manifest_to_pb(levelled)).preprocess == "auto-levels"
    assert manifest_from_pb(manifest_to_pb(plain)).preprocess == "none"
    with pytest.raises(InvalidInput, match="unknown preprocessing 'sharpen'"):
        ModelManifest.from_json({**plain.to_json(), "preprocess": "sharpen"})


def test_one_model_key_names_the_weights_and_the_preprocessing() -> None:
    plain = ModelManifest(3, 2, "ab" * 32, 10, "yolov8n.yaml", ("person", "car"), 320)
    reissued = replace(plain, version=4, parent=3, metrics={"map50": 0.5})
    assert reissued.model_key == plain.model_key == model_key("ab" * 32, "none")  # predicts alike
    assert replace(plain, preprocess="auto-levels").model_key != plain.model_key
    assert replace(plain, sha256="cd" * 32).model_key != plain.model_key
    with pytest.raises(InvalidInput, match="unknown preprocessing 'sharpen'"):
        model_key("ab" * 32, "sharpen")


def test_a_model_sees_frames_as_its_manifest_says() -> None:
    import torch

    torch.manual_seed(0)
    data, _ = StudentModel.fresh(CLASSES, 64).encode()
    plain = StudentModel.from_bytes(StudentModel.fresh(CLASSES, 64).manifest(data), data, conf=0.0)
    levelled = StudentModel.from_bytes(plain.manifest(data, preprocess="auto-levels"), data, conf=0.0)
    assert levelled.preprocess == "auto-levels"
    assert levelled.manifest(data).preprocess == "auto-levels"
    dark = _scene(5, 45)
    seen = levelled.predict([dark])[0]
    expected = plain.predict([auto_levels(dark)])[0]  # the same weights, shown the levelled frame
    assert np.allclose(seen.scores, expected.scores)
    assert seen.scores.tolist() != plain.predict([dark])[0].scores.tolist()
    assert plain.with_preprocess("auto-levels").predict([dark])[0].scores.tolist() == seen.scores.tolist()
    with pytest.raises(InvalidInput, match="cannot interpolate"):
        plain.interpolated(levelled, 0.5)


def test_a_fine_tune_learns_from_frames_as_its_model_sees_them(tmp_path: Path, monkeypatch) -> None:
    written: list[np.ndarray] = []

    def capture(root, train, val, names):
        written.extend(f.image for f in train)
        raise RuntimeError("captured")

    monkeypatch.setattr(training_module, "write_yolo_dataset", capture)
    dark = [LabelledFrame(_scene(5, 45, seed), [Detection(5, 5, 30, 30, 0, 0.9)], f"f{seed}") for seed in range(3)]
    levelled = StudentModel.fresh(CLASSES, 64, preprocess="auto-levels")
    with pytest.raises(RuntimeError, match="captured"):
        fine_tune(levelled, dark, dark[:1], TrainingConfig(), tmp_path)
    assert all(np.array_equal(w, auto_levels(f.image)) for w, f in zip(written, dark, strict=True))
