"""Drift schedules: realistic conditions (night, fog, rain, ...) applied to real video frames.

A schedule (``configs/drift/*.yaml``) splits stream time into segments, each with a condition
and a strength::

    loop: true                      # replay the video until the last segment ends
    segments:                       # each lasts until its until_s (stream seconds)
      - {until_s: 60,  condition: clean}
      - {until_s: 120, condition: dusk,  strength: 0.6}
      - {until_s: 180, condition: night, strength: 0.8, ramp_s: 10}
      - {until_s: 240, condition: [fog, noise], strength: 0.7}

``strength`` runs from 0 (the clean frame) to 1 (the harshest version) and defaults to 0.7;
a list of conditions applies each in order at that strength. ``ramp_s`` makes the change
gradual: during the first ``ramp_s`` seconds of a segment the output is a linear cross-fade
from the previous segment's frame (the clean frame for the first segment) to this one's.
After the last segment ends its condition holds.

The transforms follow the corruption benchmarks (ImageNet-C, Foggy Cityscapes) and are pure
functions ``fn(frame, strength, rng)`` in :data:`TRANSFORMS`; adding a condition is one entry.
Random patterns (noise, rain, snow) come from a generator seeded by (seed, frame index,
condition), so the same seed and frame give identical pixels. Masks and lookup tables are
cached per frame shape and strength, keeping every condition within a few milliseconds on a
768x576 frame.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import cv2
import numpy as np
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from edgesync.config import Strict, parse_config, read_yaml
from edgesync.errors import InvalidInput

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

DEFAULT_STRENGTH = 0.7
_CACHE = 64  # cached masks/LUTs: a schedule uses a handful of (shape, strength) pairs


# ---------------------------------------------------------------- shared helpers


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can corrupt the cache."""
    array.setflags(write=False)
    return array


def _lut(table: np.ndarray) -> np.ndarray:
    """A float table of shape (256,) or (256, 3) in 0..255 as a cv2.LUT table (1x256xC uint8)."""
    table = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    return _frozen(table.reshape(1, 256, -1))


_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def _tone_lut(gamma: float, gains_bgr: Sequence[float], lift: float = 0.0, contrast: float = 1.0) -> np.ndarray:
    """Per-channel tone curve: gamma, then contrast around mid-grey, then lift toward white, then gain."""
    y = _LEVELS**gamma
    y = 0.5 + (y - 0.5) * contrast
    y = y + (1.0 - y) * lift
    return _lut(np.stack([255.0 * y * g for g in gains_bgr], axis=1))


_local = threading.local()


def _scratch(shape: tuple[int, ...], dtype: type, count: int) -> list[np.ndarray]:
    """Reusable per-thread work arrays of one shape and dtype.

    Fresh multi-megabyte temporaries on every frame cost page faults (the allocator hands freed
    memory back to the OS): measured 4.6 ms per noisy 768x576 frame against 1.7 ms with these.
    """
    arrays: dict[tuple, list[np.ndarray]] = _local.__dict__.setdefault("arrays", {})
    key = (shape, np.dtype(dtype).str, count)
    if key not in arrays:
        if len(arrays) >= 8:  # a new stream size: drop buffers for old ones
            arrays.clear()
        arrays[key] = [np.empty(shape, dtype) for _ in range(count)]
    return arrays[key]


# Noise is int16 fixed point (z x 64, std x 4, product / 256): half the memory traffic of float32.
_Z_SCALE, _STD_SCALE = 64.0, 4.0


@functools.lru_cache(maxsize=1)
def _gauss_table() -> np.ndarray:
    """256 standard-normal quantiles (unit variance, x64): random bytes -> Gaussian noise via cv2.LUT."""
    dist = NormalDist()
    q = np.array([dist.inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float64)
    return _frozen(np.rint(q / q.std() * _Z_SCALE).astype(np.int16).reshape(1, 256))


@functools.lru_cache(maxsize=_CACHE)
def _noise_std_table(read_sigma: float, shot_gain: float) -> np.ndarray:
    """Noise std (x4) per pixel level: read noise plus Poisson-like shot noise growing with the signal."""
    std = np.sqrt(read_sigma**2 + shot_gain * np.arange(256, dtype=np.float64))
    return _frozen(np.rint(std * _STD_SCALE).astype(np.int16).reshape(1, 256))


def _sensor_noise(frame: np.ndarray, rng: np.random.Generator, read_sigma: float, shot_gain: float) -> np.ndarray:
    """Add per-channel Gaussian read noise and signal-dependent shot noise (std in pixel levels)."""
    noise, std = _scratch(frame.shape, np.int16, 2)
    cv2.LUT(rng.integers(0, 256, frame.shape, dtype=np.uint8), _gauss_table(), dst=noise)
    cv2.LUT(frame, _noise_std_table(read_sigma, shot_gain), dst=std)
    cv2.multiply(noise, std, dst=noise, scale=1.0 / (_Z_SCALE * _STD_SCALE))
    return cv2.add(frame, noise, dtype=cv2.CV_8U)


def _streaks(shape: tuple[int, ...], rng: np.random.Generator, count: int, length: float, slant: float) -> np.ndarray:
    """A uint8 mask of `count` anti-aliased streaks of mixed brightness, up to `length` px long."""
    h, w = shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    if count <= 0:
        return mask
    dx, dy = length * math.sin(slant), length * math.cos(slant)
    starts = rng.random((count, 2)) * (w + abs(dx), h + dy) - (max(dx, 0.0), dy)
    ends = starts + rng.uniform(0.4, 1.0, (count, 1)) * (dx, dy)
    segments = np.rint(np.stack([starts, ends], axis=1)).astype(np.int32).reshape(count, 2, 1, 2)
    thickness = max(1, round(h / 576))
    for group, level in zip(np.array_split(segments, 3), (110, 170, 240), strict=True):
        cv2.polylines(mask, list(group), False, level, thickness, cv2.LINE_AA)
    return mask


def _add_gray(frame: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """Brighten frame by a single-channel mask scaled by opacity (light streaks, flakes)."""
    layer = cv2.convertScaleAbs(mask, alpha=opacity)
    return cv2.add(frame, cv2.cvtColor(layer, cv2.COLOR_GRAY2BGR))


# ---------------------------------------------------------------- transforms


def _zero_is_identity(fn: Transform) -> Transform:
    """Wrap a transform so strength 0 returns an unchanged copy and out-of-range strength is refused."""

    @functools.wraps(fn)
    def wrapper(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        if not 0.0 <= strength <= 1.0:
            raise InvalidInput(f"drift strength must be within 0..1, got {strength}")
        if strength == 0.0:
            return frame.copy()
        return fn(frame, strength, rng)

    return wrapper


@_zero_is_identity
def clean(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The frame as captured."""
    return frame.copy()


@functools.lru_cache(maxsize=_CACHE)
def _dusk_lut(s: float) -> np.ndarray:
    return _tone_lut(1.0 + 0.8 * s, (1.0 - 0.55 * s, 1.0 - 0.42 * s, 1.0 - 0.3 * s), contrast=1.0 - 0.3 * s)


@_zero_is_identity
def dusk(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Evening light: milder darkening, a warm (orange) tint and lower contrast."""
    return cv2.LUT(frame, _dusk_lut(strength))


@functools.lru_cache(maxsize=_CACHE)
def _night_lut(s: float) -> np.ndarray:
    return _tone_lut(1.0 + 1.8 * s, (1.0 - 0.7 * s, 1.0 - 0.76 * s, 1.0 - 0.84 * s))


@_zero_is_identity
def night(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Low light: strong gamma darkening, a blue tint and amplified sensor noise.

    At strength 0.8 mid-grey drops to about a seventh of its brightness (128 -> 18) under
    noise of about 5 levels: objects are hard to see, not black.
    """
    dark = cv2.LUT(frame, _night_lut(strength))
    return _sensor_noise(dark, rng, read_sigma=5.0 * strength, shot_gain=0.8 * strength**2)


@functools.lru_cache(maxsize=_CACHE)
def _fog_layers(h: int, w: int, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transmission, its complement and the haze image for a frame shape (Foggy Cityscapes model).

    I = J * t + A * (1 - t) with t = exp(-beta * depth). Depth grows toward the top of the
    frame (a fixed camera looking down: further away is higher up), with smooth patches of
    thicker and thinner fog from a fixed seed so the fog does not flicker.
    """
    rows = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]  # 1 at the top (far), 0 at the bottom
    depth = 0.3 + 1.2 * rows**1.3
    coarse = np.random.default_rng(1234).standard_normal((max(2, h // 96), max(2, w // 96))).astype(np.float32)
    patches = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth blobs a few 100 px wide
    patches /= max(float(np.abs(patches).max()), 1e-6)
    t = np.exp(-s * depth * (1.0 + 0.2 * patches)).astype(np.float32)
    haze = np.empty((h, w, 3), dtype=np.uint8)
    haze[:] = (222, 218, 212)  # a slightly cool light grey (B, G, R)
    return _frozen(t), _frozen(1.0 - t), _frozen(haze)


@_zero_is_identity
def fog(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Haze: blend toward bright airlight, more with distance (up the frame), losing contrast."""
    t, one_minus_t, haze = _fog_layers(frame.shape[0], frame.shape[1], strength)
    return cv2.blendLinear(frame, haze, t, one_minus_t)


@functools.lru_cache(maxsize=_CACHE)
def _rain_lut(s: float) -> np.ndarray:
    dim = 1.0 - 0.25 * s
    return _tone_lut(1.0 + 0.2 * s, (dim, dim, dim), contrast=1.0 - 0.2 * s)


@_zero_is_identity
def rain(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Rain: light, slanted, motion-blurred streaks over a darker, slightly blurred scene."""
    h, w = frame.shape[:2]
    base = cv2.GaussianBlur(cv2.LUT(frame, _rain_lut(strength)), (0, 0), 0.5 + 0.8 * strength)
    count = int(strength * h * w / 400)
    mask = _streaks(frame.shape, rng, count, length=0.05 * h, slant=math.radians(10))
    mask = cv2.GaussianBlur(cv2.blur(mask, (1, 5)), (0, 0), 0.7)  # motion blur along the fall, soft edges
    return _add_gray(base, mask, opacity=0.4 + 0.4 * strength)


@functools.lru_cache(maxsize=_CACHE)
def _snow_lut(s: float) -> np.ndarray:
    return _tone_lut(1.0 - 0.15 * s, (1.0, 1.0, 1.0), lift=0.3 * s, contrast=1.0 - 0.25 * s)


@_zero_is_identity
def snow(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Snowfall: white flakes of a few sizes, slightly smeared downward, over a brighter, washed-out scene."""
    h, w = frame.shape[:2]
    out = cv2.LUT(frame, _snow_lut(strength))
    mask = np.zeros((h, w), dtype=np.uint8)
    unit = h / 576
    for diameter, density, level in ((2, 1 / 500, 170), (4, 1 / 2500, 215), (7, 1 / 12000, 255)):
        count = int(strength * h * w * density)
        if count == 0:
            continue
        centres = np.rint(rng.random((count, 2)) * (w, h)).astype(np.int32)
        dots = np.repeat(centres[:, None, None, :], 2, axis=1)  # zero-length lines: round discs
        cv2.polylines(mask, list(dots), False, level, max(1, round(diameter * unit)), cv2.LINE_AA)
    mask = cv2.GaussianBlur(cv2.blur(mask, (1, 3)), (0, 0), 0.8)  # falling, slightly out of focus
    return _add_gray(out, mask, opacity=0.6 + 0.4 * strength)


@_zero_is_identity
def blur(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus: Gaussian blur with sigma up to 1% of the frame height (about 6 px at 576 rows)."""
    sigma = strength * 0.01 * frame.shape[0]
    return cv2.GaussianBlur(frame, (0, 0), sigma)


@_zero_is_identity
def noise(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Gaussian read noise plus shot noise (std about 32 levels on white at strength 1)."""
    return _sensor_noise(frame, rng, read_sigma=20.0 * strength, shot_gain=2.5 * strength**2)


@functools.lru_cache(maxsize=_CACHE)
def _cast_lut(s: float) -> np.ndarray:
    return _lut(np.stack([_LEVELS * 255.0 * g for g in (1.0 - 0.5 * s, 1.0 + 0.1 * s, 1.0 + 0.3 * s)], axis=1))


@_zero_is_identity
def color_cast(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A white-balance error: per-channel gains giving a yellow-orange cast (as under sodium lamps)."""
    return cv2.LUT(frame, _cast_lut(strength))


@_zero_is_identity
def jpeg(frame: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Compression loss: re-encode as JPEG at quality 5 + 85 * (1 - strength)^2 (13 at 0.7, 5 at 1)."""
    quality = int(round(5 + 85 * (1.0 - strength) ** 2))
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InvalidInput(f"cannot JPEG-encode a frame of shape {frame.shape}")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


TRANSFORMS: dict[str, Transform] = {
    "clean": clean,
    "dusk": dusk,
    "night": night,
    "fog": fog,
    "rain": rain,
    "snow": snow,
    "blur": blur,
    "noise": noise,
    "color_cast": color_cast,
    "jpeg": jpeg,
}
"""Condition name -> transform. A new condition is one entry; schedules accept it at once."""


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InvalidInput(f"drift needs an HxWx3 uint8 BGR frame, got {got}")
    return np.ascontiguousarray(frame)


def frame_rng(seed: int, frame_index: int, condition: str) -> np.random.Generator:
    """The generator for one condition on one frame: same (seed, frame, condition), same pixels."""
    if frame_index < 0:
        raise InvalidInput(f"frame_index must be >= 0, got {frame_index}")
    return np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, frame_index, zlib.crc32(condition.encode())])


def apply_conditions(
    frame_bgr: np.ndarray,
    conditions: str | Sequence[str],
    strength: float,
    seed: int = 0,
    frame_index: int = 0,
) -> np.ndarray:
    """Apply one condition or several in order, each at `strength`, returning a new uint8 BGR frame.

    Useful on its own for benchmarks ("this frame under night 0.8") without a schedule.
    """
    frame = _check_frame(frame_bgr)
    names = [conditions] if isinstance(conditions, str) else list(conditions)
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown:
        raise InvalidInput(f"unknown drift condition(s) {unknown}; known: {', '.join(TRANSFORMS)}")
    if not names:
        return frame.copy()
    out = frame
    for name in names:
        out = TRANSFORMS[name](out, strength, frame_rng(seed, frame_index, name))
    return out


# ---------------------------------------------------------------- schedule


class DriftSegment(Strict):
    """One stretch of stream time under one condition (or several combined)."""

    model_config = ConfigDict(frozen=True)

    until_s: float = Field(gt=0)  # stream seconds at which this segment ends (exclusive)
    condition: tuple[str, ...]  # a name or a list of names from TRANSFORMS, applied in order
    strength: float = Field(DEFAULT_STRENGTH, ge=0, le=1)
    ramp_s: float = Field(0.0, ge=0)  # cross-fade from the previous segment over this many seconds

    _name: str | None = PrivateAttr(default=None)

    @field_validator("condition", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("condition")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("empty condition list: name at least one condition")
        for name in value:
            if name not in TRANSFORMS:
                raise ValueError(f"unknown condition {name!r} (known: {', '.join(TRANSFORMS)})")
        if len(set(value)) != len(value):
            raise ValueError(f"condition {list(value)} repeats a name")
        if len(value) > 1 and "clean" in value:
            raise ValueError(f"'clean' cannot be combined with other conditions: {list(value)}")
        return value

    @property
    def label(self) -> str:
        """The conditions joined by '+', e.g. 'fog+noise'."""
        return "+".join(self.condition)

    @property
    def name(self) -> str:
        """The label, made unique within its schedule by '#2', '#3' when a condition recurs."""
        return self._name or self.label


class DriftSchedule(Strict):
    """Segments back to back from stream time 0; see the module docstring for the YAML format."""

    model_config = ConfigDict(frozen=True)

    loop: bool = False  # replay the video until the last segment ends
    segments: list[DriftSegment] = Field(min_length=1)

    _untils: list[float] = PrivateAttr(default_factory=list)

    @field_validator("segments")
    @classmethod
    def _ordered(cls, segments: list[DriftSegment]) -> list[DriftSegment]:
        start = 0.0
        for i, seg in enumerate(segments):
            if seg.until_s <= start:
                raise ValueError(
                    f"segments.{i}.until_s ({seg.until_s:g}) must be greater than the previous until_s ({start:g})"
                )
            if seg.ramp_s > seg.until_s - start:
                raise ValueError(
                    f"segments.{i}.ramp_s ({seg.ramp_s:g}) is longer than the segment ({seg.until_s - start:g} s)"
                )
            start = seg.until_s
        return segments

    @model_validator(mode="after")
    def _name_segments(self) -> DriftSchedule:
        seen: dict[str, int] = {}
        for seg in self.segments:
            seen[seg.label] = seen.get(seg.label, 0) + 1
            seg._name = seg.label if seen[seg.label] == 1 else f"{seg.label}#{seen[seg.label]}"
        self._untils = [seg.until_s for seg in self.segments]
        return self

    @property
    def duration_s(self) -> float:
        """Stream seconds until the last segment ends."""
        return self.segments[-1].until_s

    @property
    def names(self) -> list[str]:
        """Segment names in order, unique within the schedule."""
        return [seg.name for seg in self.segments]

    def boundaries(self) -> list[float]:
        """Start time of each segment in seconds: [0.0, first until_s, ...]."""
        return [0.0, *self._untils[:-1]]

    def segment_at(self, t_s: float) -> tuple[int, DriftSegment]:
        """(index, segment) in force at stream time t_s; a segment starts at its boundary.

        After the schedule ends the last segment holds.
        """
        if not math.isfinite(t_s) or t_s < 0:
            raise InvalidInput(f"stream time must be a finite number >= 0, got {t_s}")
        index = min(bisect.bisect_right(self._untils, t_s), len(self.segments) - 1)
        return index, self.segments[index]


def load_schedule(path: Path | str) -> DriftSchedule:
    """Read a drift schedule YAML; errors (ConfigError) name the file and the key."""
    return parse_config(DriftSchedule, read_yaml(path), str(path))


# ---------------------------------------------------------------- applier


class DriftApplier:
    """Applies a schedule to a stream: each frame gets the condition in force at its stream time."""

    def __init__(self, schedule: DriftSchedule, seed: int = 0) -> None:
        self.schedule = schedule
        self.seed = seed
        self._last_index: int | None = None

    def condition_at(self, t_s: float) -> str:
        """The name of the segment in force at t_s (the new one as soon as a ramp starts)."""
        return self.schedule.segment_at(t_s)[1].name

    def apply(self, frame_bgr: np.ndarray, t_s: float, frame_index: int) -> np.ndarray:
        """The drifted copy of a frame captured at stream time t_s; the input is left unchanged.

        frame_index seeds the random patterns, so replaying a stream gives identical frames.
        """
        index, seg = self.schedule.segment_at(t_s)
        if index != self._last_index:
            log.info("drift: %s (strength %.2f) from t=%.1f s", seg.name, seg.strength, t_s)
            self._last_index = index
        out = apply_conditions(frame_bgr, seg.condition, seg.strength, self.seed, frame_index)
        elapsed = t_s - self.schedule.boundaries()[index]
        if seg.ramp_s > 0 and elapsed < seg.ramp_s:
            alpha = elapsed / seg.ramp_s
            if index > 0:
                prev = self.schedule.segments[index - 1]
                before = apply_conditions(frame_bgr, prev.condition, prev.strength, self.seed, frame_index)
            else:
                before = _check_frame(frame_bgr)
            out = cv2.addWeighted(before, 1.0 - alpha, out, alpha, 0.0)
        return out
