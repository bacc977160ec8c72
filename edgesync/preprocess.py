"""What a student does to a frame before it sees it: nothing, or stretch each colour channel's levels.

Dusk, night, fog, snow and a colour cast mostly squeeze a frame's intensities into part of the
range, differently per channel, where the student learnt from full-range daylight frames. A camera
pipeline's auto levels (the darkest and brightest `clip` share of each channel's pixels mapped to
0 and 255, linearly in between: white balance and contrast in one step) undoes much of that without
any training; on a frame that already spans the range it changes little. Whether a model uses it is
a property of that model (ModelManifest.preprocess): the frames it was fine-tuned on and every frame
it predicts on get the same treatment, and the cloud chooses it per job by the held-out frames
(training.preprocess; BENCHMARKS.md, session 34).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgesync.errors import InvalidInput
from edgesync.types import check_preprocess

# the share of each channel's pixels clipped at either end: 0.5 %, the clip of classic auto-levels
# tools (GIMP's white balance stretches after discarding 0.05 % of pixels, Photoshop's Auto
# Contrast clips 0.1-0.5 %). On the bench student, untrained, 0.5 % scored above 1 % under eight of
# nine drift conditions (colour cast 76.0 against 76.5; a one-off comparison, BENCHMARKS.md, session 34)
CLIP = 0.005
SAMPLE_STEP = 4


def auto_levels(frame: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """frame (H, W, 3 uint8) with each channel's levels stretched so that `clip` of its pixels fall
    at or below 0 and as many at or above 255. A channel with (almost) one level is left as it is.

    The levels are counted on every SAMPLE_STEP-th pixel of every SAMPLE_STEP-th row (28 thousand
    of a 768 x 576 frame; a last partial block of rows or columns is left out), copied out by a
    nearest-neighbour resize first: cv2.calcHist over the strided view took 0.44 ms of the 0.67 ms
    the whole took on vtest.avi's frames, over the copy 0.05 ms and the copy 0.03 ms; the stretch
    is one affine pass (cv2.transform, 0.18 ms). Between predictions, as on the edge (caches
    cold), 0.49 ms against the strided count's 0.70: 0.015 of the bench student's prediction
    time, where it was 0.021 (scripts/levels_cost.py; BENCHMARKS.md, session 36)."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InvalidInput(f"auto levels needs an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    rows, cols = frame.shape[0] // SAMPLE_STEP, frame.shape[1] // SAMPLE_STEP
    sample = frame  # a frame under SAMPLE_STEP pixels a side is counted whole
    if rows and cols:  # nearest neighbour at an exact integer scale: the top-left pixel of each block
        block = frame[: rows * SAMPLE_STEP, : cols * SAMPLE_STEP]
        sample = cv2.resize(block, (cols, rows), interpolation=cv2.INTER_NEAREST)
    return cv2.transform(frame, levels_affine(sample, clip))


def levels_affine(sample: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """The (3, 4) cv2.transform matrix that stretches each channel so that `clip` of sample's
    pixels fall at or below 0 and as many at or above 255 (identity for a flat channel)."""
    affine = np.zeros((3, 4), np.float32)  # out[c] = affine[c, c] * in[c] + affine[c, 3], saturated
    for channel in range(3):
        counts = cv2.calcHist([sample], [channel], None, [256], [0, 256]).ravel()
        cumulative = np.cumsum(counts) / counts.sum()
        low = int(np.searchsorted(cumulative, clip, side="right"))
        high = int(np.searchsorted(cumulative, 1.0 - clip, side="left"))
        if high - low < 2:  # a flat channel: stretching it would only amplify noise
            affine[channel, channel] = 1.0
            continue
        affine[channel, channel] = 255.0 / (high - low)
        affine[channel, 3] = -low * 255.0 / (high - low)
    return affine


def preprocessed(frames: list[np.ndarray], mode: str) -> list[np.ndarray]:
    """frames as a model with this preprocessing sees them."""
    if check_preprocess(mode) == "none":
        return frames
    return [auto_levels(f) for f in frames]
