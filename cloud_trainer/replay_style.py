"""Replay frames shown in the colours of the scene a job trains for (training.replay_style).

A job trains on the newest frames of its edge's current scene and a replay share of older
frames, which show scenes the edge has left: daylight replayed into a night job, say. With
"matched", each replay frame's colour channels are remapped so that their histograms match
those of the job's fresh frames (histogram specification; Gonzalez and Woods, Digital Image
Processing, ch. 3). Only intensities change, so the boxes the teacher drew on the replay frame
still hold, and the student sees the older scenes' objects under the new scene's brightness,
contrast and colour balance: more frames of the look it must learn, at no labelling cost.
A global tone change (dusk, night, a colour cast) is carried over almost exactly; what is not a
tone curve (haze that varies across the frame, noise, rain streaks) only in its histogram. Replay
frames of the scene itself come out nearly as they were. It costs a few milliseconds a frame on
the host's CPU, which the benchmark does not charge. Measured on dev and left off: fine-tunes on
fog-matched frames unlearnt fog (BENCHMARKS.md, session 24).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from cloud_trainer.training import LabelledFrame

LEVELS = 256


def channel_histograms(images: Sequence[np.ndarray]) -> np.ndarray:
    """Pixel counts per intensity level of each colour channel over images (uint8, H x W x C): (C, 256)."""
    if not images:
        raise ValueError("channel_histograms needs at least one image")
    channels = images[0].shape[2]
    counts = np.zeros((channels, LEVELS), np.int64)
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != channels:
            raise ValueError(f"expected uint8 images with {channels} channels, got {image.dtype} {image.shape}")
        for c in range(channels):
            counts[c] += np.bincount(image[..., c].ravel(), minlength=LEVELS)
    return counts


def matching_lut(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel lookup tables (C, 256, uint8) that give source's histograms reference's shape:
    each level goes to the lowest reference level whose cumulative share reaches its own."""
    src_cdf = np.cumsum(source, axis=1) / np.maximum(source.sum(axis=1, keepdims=True), 1)
    ref_cdf = np.cumsum(reference, axis=1) / np.maximum(reference.sum(axis=1, keepdims=True), 1)
    lut = np.stack([np.searchsorted(ref, src, side="left") for src, ref in zip(src_cdf, ref_cdf, strict=True)])
    return np.clip(lut, 0, LEVELS - 1).astype(np.uint8)


def matched(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """image with each channel's histogram matched to reference's (channel_histograms of the target look)."""
    lut = matching_lut(channel_histograms([image]), reference)
    return cv2.LUT(image, np.ascontiguousarray(lut.T[np.newaxis]))  # one 1 x 256 x C table, as edgesync.drift's


def restyled_replay(
    replay: list[LabelledFrame], fresh: list[LabelledFrame], style: str = "matched"
) -> list[LabelledFrame]:
    """The replay frames as training.replay_style shows them: "matched" to the fresh frames'
    colours (their labels unchanged), or "as-is"; as they are without fresh frames."""
    if style not in ("as-is", "matched"):
        raise ValueError(f"replay style must be 'as-is' or 'matched', got {style!r}")
    if style == "as-is" or not replay or not fresh:
        return replay
    reference = channel_histograms([f.image for f in fresh])
    return [replace(frame, image=matched(frame.image, reference)) for frame in replay]
