"""Which frames the edge uploads: score every frame, keep the best under an upload budget.

EdgeSync (arXiv 2406.03001) filters samples by *inference results* and *timeliness*. A frame is
worth labelling when the student is unsure about it (borderline box confidences) or when the
student suddenly sees fewer confident boxes than it recently did (a collapse under drift). A
frame is worth more the fresher it is, and much less once a scene change has made it stale.

Everything here is a pure function of its inputs. Time is passed in (capture seconds of the
stream) and never read from a clock, so the live edge and a virtual-time benchmark run the same
code. One sliding-window limiter, shared by every sampler, enforces the upload budget.

A scene change makes the first frames of the new scene the most valuable ones: the cloud needs a
few dozen of them before it can train a model for that scene. So after a change the sampler
uploads at `burst_factor` times its rate for `burst_s`, borrowing from the seconds that follow
(edgesync.uploads.UploadBudget.burst): the same average budget, spent sooner.
"""

from __future__ import annotations

import bisect
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from edgesync.config import SamplerConfig
from edgesync.errors import ConfigError, InvalidInput
from edgesync.types import Detection, Sample
from edgesync.uploads import Encoded, UploadBudget, check_frame, downscaled, encode_jpeg, window_budget

log = logging.getLogger(__name__)

LN2 = math.log(2.0)
# a frame up to this many times max_side on its longest side is held as it came until it is released
# (the default max_side, 640: up to 1280 px, 1280 x 960 x 3 bytes = 3.7 MB; 20 slots at the default budget)
HOLD_AS_IS = 2


# ---------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class FrameInfo:
    """What the sampler knows about one frame besides its pixels.

    scores are the student's box confidences at a LOW threshold (e.g. every box >= 0.05), so
    borderline boxes are visible. detections (the student's boxes at its deployed threshold) are
    carried through untouched so the caller can build the upload from a `Selected`.
    """

    t_s: float
    frame_index: int
    scores: np.ndarray
    detections: tuple[Detection, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.t_s):
            raise InvalidInput(f"frame {self.frame_index}: capture time t_s={self.t_s!r} is not finite")
        scores = np.asarray(self.scores, dtype=np.float64)
        if scores.ndim != 1:
            raise InvalidInput(
                f"frame {self.frame_index}: scores must be a 1-D array of box confidences, got shape {scores.shape}"
            )
        if scores.size and not (np.all(np.isfinite(scores)) and scores.min() >= 0 and scores.max() <= 1):
            raise InvalidInput(f"frame {self.frame_index}: box confidences must lie in [0, 1]")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "detections", tuple(self.detections))


@dataclass(frozen=True)
class Selected:
    """A frame released for upload: its JPEG and why it was chosen."""

    info: FrameInfo
    score: float  # inference score in [0, 1]
    priority: float  # score x timeliness at release time
    jpeg: bytes
    width: int  # of the encoded image
    height: int
    scale: float  # encoded size / original size (<= 1); multiply box coordinates by it
    released_s: float  # the budget clock: stream time at which the frame was released
    scene_start_s: float | None = None  # stream time of the last scene change before the frame
    audit: bool = False  # drawn at random, not on merit: the cloud validates models on it (audit_share)

    @property
    def nbytes(self) -> int:
        return len(self.jpeg)

    def to_sample(self, sample_id: str, edge_id: str, model_version: int, origin_s: float = 0.0) -> Sample:
        """The upload for this frame: its JPEG, with the student's boxes in the JPEG's pixels.

        origin_s turns stream times into the capture clock (the wall-clock time of stream t=0).
        """
        return Sample(
            sample_id=sample_id,
            edge_id=edge_id,
            capture_time=origin_s + self.info.t_s,
            model_version=model_version,
            jpeg=self.jpeg,
            detections=self.scaled_detections(),
            score=self.score,
            frame_index=self.info.frame_index,
            scene_start=0.0 if self.scene_start_s is None else origin_s + self.scene_start_s,
            audit=self.audit,
        )

    def scaled_detections(self) -> list[Detection]:
        """The frame's detections in pixels of the encoded image."""
        s = self.scale
        return [Detection(d.x1 * s, d.y1 * s, d.x2 * s, d.y2 * s, d.class_id, d.score) for d in self.info.detections]


@dataclass
class SamplerStats:
    """Counters a dashboard shows for the sampler."""

    frames_scored: int = 0
    selected: int = 0
    audit: int = 0  # of those, frames drawn at random for validation (audit_share)
    skipped_budget: int = 0  # frames chosen on merit but refused by the upload budget
    bytes_selected: int = 0
    bursts: int = 0  # upload bursts started by scene changes


# ---------------------------------------------------------------- scoring

MASK64 = (1 << 64) - 1


def audit_draw(frame_index: int) -> float:
    """A uniform draw in [0, 1) fixed by the frame's index (splitmix64's finaliser).

    It depends on nothing the student sees, so the frames with the lowest draws are a random
    sample of the stream, and the same stream gives the same sample on every run.
    """
    z = (frame_index + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return (z ^ (z >> 31)) / 2.0**64


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p): 1 at p=0.5, 0 at p in {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def count_sure(scores: np.ndarray, cfg: SamplerConfig) -> int:
    """Boxes the student is sure about (confidence >= conf_high)."""
    return int(np.count_nonzero(np.asarray(scores) >= cfg.conf_high))


def uncertainty_score(scores: np.ndarray, cfg: SamplerConfig) -> float:
    """How unsure the student is about a frame, in [0, 1].

    Only borderline boxes (conf_low <= confidence < conf_high) count: below conf_low is
    background noise, above conf_high the student is sure. The score is the mean binary entropy
    of the `uncertainty_top_k` most uncertain boxes, missing boxes counting as certain (0), so
    more borderline boxes mean a higher score, up to k of them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    borderline = scores[(scores >= cfg.conf_low) & (scores < cfg.conf_high)]
    if borderline.size == 0:
        return 0.0
    k = cfg.uncertainty_top_k
    top = np.sort(binary_entropy(borderline))[::-1][:k]
    return float(min(1.0, top.sum() / k))


def collapse_score(num_sure: int, expected_sure: float) -> float:
    """Share of the recently expected sure boxes the student no longer sees, in [0, 1].

    max(0, 1 - sure/expected), with the expectation floored at one box: a scene that averages
    under one sure box cannot lose a meaningful fraction of it, so an empty frame there is not a
    collapse.
    """
    deficit = expected_sure - num_sure
    if deficit <= 0:
        return 0.0
    return float(min(1.0, deficit / max(expected_sure, 1.0)))


def inference_score(scores: np.ndarray, cfg: SamplerConfig, expected_sure: float) -> float:
    """How much the cloud could learn from a frame, in [0, 1], from the student's output alone.

    Noisy-or of uncertainty (borderline boxes) and collapse (fewer sure boxes than the running
    average `expected_sure`): either signal alone can make a frame informative, and there are
    no weights to tune.
    """
    a = uncertainty_score(scores, cfg)
    b = collapse_score(count_sure(scores, cfg), expected_sure)
    return 1.0 - (1.0 - a) * (1.0 - b)


def timeliness(t_s: float, now_s: float, cfg: SamplerConfig, scene_change_s: float | None = None) -> float:
    """Weight of a frame captured at t_s as seen at now_s: halves every timeliness_half_life_s.

    A frame captured before the last scene change shows a scene that no longer exists, so its
    weight is further multiplied by stale_weight.
    """
    age = max(0.0, now_s - t_s)
    weight = math.exp(-LN2 * age / cfg.timeliness_half_life_s)
    if scene_change_s is not None and t_s < scene_change_s:
        weight *= cfg.stale_weight
    return weight


# ---------------------------------------------------------------- samplers


def _check_config(cfg: SamplerConfig) -> None:
    if cfg.conf_low >= cfg.conf_high:
        raise ConfigError(f"sampler: conf_low ({cfg.conf_low}) must be below conf_high ({cfg.conf_high})")


class Sampler(ABC):
    """Decides which frames to upload. Feed every frame to offer(), in capture order.

    Both methods return the frames released for upload now (possibly none, possibly frames
    offered earlier). The base class keeps what every policy needs: the scoring state (running
    average of sure boxes, last scene change), the upload budget and the counters.
    """

    def __init__(self, cfg: SamplerConfig) -> None:
        _check_config(cfg)
        self.cfg = cfg
        self.stats = SamplerStats()
        self.budget = UploadBudget.from_config(cfg)
        self.window_count, self.window_bytes = window_budget(cfg)
        self._expected_sure: float | None = None
        self._last_t: float | None = None
        self._scene_changes: list[float] = []  # stream times of detected scene changes, ascending
        self._served_scene: float | None = None  # scene start the deployed model was trained on
        self._burst_pending = False  # a scene change was marked; the next frame starts a burst

    @abstractmethod
    def offer(self, info: FrameInfo, frame: np.ndarray) -> list[Selected]:
        """Consider one frame (captured at info.t_s); return frames released for upload now."""

    @abstractmethod
    def flush(self, now_s: float) -> list[Selected]:
        """Release whatever is still held (end of stream, shutdown)."""

    @property
    def expected_sure(self) -> float:
        """Running average of sure boxes per frame (half-life timeliness_half_life_s)."""
        return self._expected_sure or 0.0

    @property
    def scene_change_s(self) -> float | None:
        """Stream time of the last scene change, None before the first."""
        return self._scene_changes[-1] if self._scene_changes else None

    def mark_scene_change(self, t_s: float) -> None:
        """Frames captured before t_s now show a stale scene (see timeliness), and the next frame
        starts an upload burst (burst_factor x the budget for burst_s, paid back after it)."""
        if not self._scene_changes or t_s > self._scene_changes[-1]:
            self._scene_changes.append(t_s)
            del self._scene_changes[:-64]  # frames older than 64 scenes are long gone
            self._burst_pending = self.cfg.burst_factor > 1.0 and self.cfg.burst_s > 0

    def _start_burst(self, start_s: float, end_s: float) -> None:
        """Raise the budget from start_s to end_s (inclusive); the excess is repaid afterwards."""
        self._burst_pending = False
        self.stats.bursts += 1
        self.budget.burst(start_s, end_s, self.cfg.burst_factor)
        log.debug("upload burst x%.3g from t=%.1f to %.1f s", self.cfg.burst_factor, start_s, end_s)

    def model_updated(self, trained_scene_s: float | None) -> None:
        """A new model is deployed, trained on frames of the scene that started at trained_scene_s
        (stream time; None: no scene change had been reported)."""
        if trained_scene_s is not None and (self._served_scene is None or trained_scene_s > self._served_scene):
            self._served_scene = trained_scene_s

    def is_novel(self, t_s: float) -> bool:
        """Whether a frame at t_s shows a scene that began after the deployed model's training scene."""
        scene = self.scene_start_of(t_s)
        return scene is not None and (self._served_scene is None or scene > self._served_scene)

    def scene_start_of(self, t_s: float) -> float | None:
        """Stream time of the last scene change at or before t_s (the start of that frame's scene)."""
        i = bisect.bisect_right(self._scene_changes, t_s)
        return self._scene_changes[i - 1] if i else None

    def _observe(self, info: FrameInfo) -> float:
        """Score a frame against the running average, then fold the frame into the average."""
        if self._last_t is not None and info.t_s < self._last_t:
            raise InvalidInput(
                f"frame {info.frame_index}: capture time {info.t_s} is before the previous frame's "
                f"{self._last_t}; offer frames in capture order"
            )
        sure = count_sure(info.scores, self.cfg)
        if self._expected_sure is None:
            self._expected_sure = float(sure)
        score = inference_score(info.scores, self.cfg, self._expected_sure)
        if self.is_novel(info.t_s):
            score = 1.0 - (1.0 - score) * (1.0 - self.cfg.novelty_prior)
        if self._last_t is not None:
            dt = info.t_s - self._last_t
            rate = 1.0 - math.exp(-LN2 * dt / self.cfg.timeliness_half_life_s)
            self._expected_sure += rate * (sure - self._expected_sure)
        self._last_t = info.t_s
        self.stats.frames_scored += 1
        return score

    def _priority(self, t_s: float, score: float, now_s: float) -> float:
        return score * timeliness(t_s, now_s, self.cfg, self.scene_change_s)

    def _encode(self, frame: np.ndarray) -> Encoded:
        return encode_jpeg(frame, self.cfg.jpeg_quality, self.cfg.max_side)

    def _hold(self, info: FrameInfo, frame: np.ndarray, score: float) -> _Held:
        """A copy of frame to encode if it is released: as it came while its longest side is at most
        HOLD_AS_IS times max_side (a copy takes 0.1-0.3 ms of a 768 x 576 frame, shrinking it 3-7),
        shrunk to max_side beyond, so that a held frame never takes more than HOLD_AS_IS² times the
        memory of an upload's pixels."""
        if max(frame.shape[:2]) <= HOLD_AS_IS * self.cfg.max_side:
            return _Held(info, frame.copy(), score)
        shrunk, scale = downscaled(frame, self.cfg.max_side)
        return _Held(info, shrunk, score, scale)

    def _encode_held(self, held: _Held) -> Encoded:
        encoded = self._encode(held.frame)
        return encoded._replace(scale=encoded.scale * held.scale)  # of the frame as it was offered

    def _release(
        self, info: FrameInfo, score: float, enc: Encoded, now_s: float, audit: bool = False
    ) -> Selected | None:
        """Spend budget on one frame; None (counted) when the budget refuses it."""
        released_s = self.budget.take(now_s, len(enc.jpeg))
        if released_s is None:
            self.stats.skipped_budget += 1
            if len(enc.jpeg) > self.window_bytes:
                log.warning(
                    "frame %d: JPEG of %d bytes exceeds the whole per-window byte budget (%d); "
                    "raise sampler.max_bytes_per_s or lower max_side/jpeg_quality",
                    info.frame_index,
                    len(enc.jpeg),
                    self.window_bytes,
                )
            return None
        self.stats.selected += 1
        self.stats.audit += audit
        self.stats.bytes_selected += len(enc.jpeg)
        return Selected(
            info=info,
            score=score,
            priority=self._priority(info.t_s, score, released_s),
            jpeg=enc.jpeg,
            width=enc.width,
            height=enc.height,
            scale=enc.scale,
            released_s=released_s,
            scene_start_s=self.scene_start_of(info.t_s),
            audit=audit,
        )


@dataclass
class _Held:
    """A frame kept unencoded until the window closes (a slot's best, the fallback or an audit
    frame): a copy, or one already shrunk to max_side by `scale` (Sampler._hold)."""

    info: FrameInfo
    frame: np.ndarray = field(repr=False)
    score: float = 0.0
    scale: float = 1.0


class EdgeSyncSampler(Sampler):
    """Per window of window_s seconds, upload the k most valuable frames (k = sample budget),
    no two closer than min_gap_s = window_s / (2k).

    Value = inference_score x timeliness at release time. The window is cut into 2k slots of
    min_gap_s; each slot keeps only its best frame (a copy, see _hold: at most 2k are held),
    and only a frame that is released is shrunk and JPEG-encoded. When the window closes, the
    subset of at most k candidates with the largest total value and pairwise spacing of at
    least min_gap_s is chosen exactly (a small dynamic programme), then released best first
    while the budget allows, in capture order. One slot per gap (not k candidates in all) is
    what makes the spacing cost nothing when the window is informative throughout: every other
    slot is always a valid choice, so a full window still fills its budget, while a burst of
    near-identical frames takes one pick per gap instead of the whole budget.

    A window where no frame is informative (score 0) sends only its freshest frame: the cloud
    keeps a trickle of clean replay data (which keeps fine-tuning from forgetting the normal
    scene) without spending the budget on frames that teach nothing new. Frames with score 0
    are never sent from a window that has an informative frame.

    A share of the picks (audit_share) goes to frames drawn at random instead (audit_draw): the
    frames chosen on merit are the ones the student finds hard, so a model scored on them is
    scored on the hard cases, not on what the camera mostly sees. The cloud validates models
    and tracks the edge's accuracy on the audit frames. Each window holds the frames with the
    lowest draws (a copy of each, encoded only if it is released); the share is kept over
    windows by carrying the fraction of a pick over to the next one.
    """

    def __init__(self, cfg: SamplerConfig) -> None:
        super().__init__(cfg)
        self.k = self.window_count  # picks per window (more during an upload burst)
        self.min_gap_s = cfg.window_s / (2 * self.k)
        self._origin: float | None = None
        self._window: int | None = None
        self._slots: dict[float, _Held] = {}  # slot start time -> best frame in that slot
        self._fallback: _Held | None = None
        self._last_selected_t: float | None = None
        self._audit: list[tuple[float, _Held]] = []  # the window's lowest audit draws, ascending
        self._audit_credit = 0.0  # the fraction of an audit pick carried over from earlier windows

    def _window_start(self, index: int) -> float:
        assert self._origin is not None
        return self._origin + index * self.cfg.window_s

    def offer(self, info: FrameInfo, frame: np.ndarray) -> list[Selected]:
        check_frame(frame)
        score = self._observe(info)
        released: list[Selected] = []
        if self._origin is None:
            self._origin = info.t_s
        index = math.floor((info.t_s - self._origin) / self.cfg.window_s)
        if self._window is not None and index != self._window:
            released = self._close(self._window_start(self._window + 1))
        if self._burst_pending:  # every window closing before burst_s has passed takes more picks
            end = self._window_start(index + 1)
            while end < info.t_s + self.cfg.burst_s - 1e-9:
                end += self.cfg.window_s
            self._start_burst(info.t_s, end)
            self._window = None  # the open window (if any) takes the burst's picks from here on
        if index != self._window:  # picks and spacing follow the budget at the window's close
            self.k = max(1, math.floor(self.window_count * self.budget.factor_at(self._window_start(index + 1))))
            self.min_gap_s = self.cfg.window_s / (2 * self.k)
        self._window = index
        self._offer_audit(info, frame, score)
        if self._last_selected_t is not None and info.t_s - self._last_selected_t < self.min_gap_s:
            return released  # too close to a frame already uploaded
        if score <= 0.0:
            self._fallback = _Held(info, frame.copy())  # one frame: held as it came, whatever its size
            return released
        start = self._window_start(index)
        end = start + self.cfg.window_s
        # a slot is named by its start time: a burst beginning mid-window narrows the slots after it
        slot = start + min(2 * self.k - 1, max(0, math.floor((info.t_s - start) / self.min_gap_s))) * self.min_gap_s
        held = self._slots.get(slot)
        if held is None or self._priority(info.t_s, score, end) > self._priority(held.info.t_s, held.score, end):
            self._slots[slot] = self._hold(info, frame, score)
        return released

    def _offer_audit(self, info: FrameInfo, frame: np.ndarray, score: float) -> None:
        """Keep the frame if its draw is among the window's lowest (as many as the window could take)."""
        if self.cfg.audit_share <= 0.0:
            return
        keep = math.floor(self.cfg.audit_share * self.k) + 1  # the carried fraction adds at most one
        draw = audit_draw(info.frame_index)
        if len(self._audit) >= keep and draw >= self._audit[-1][0]:
            return
        bisect.insort(self._audit, (draw, self._hold(info, frame, score)), key=lambda held: held[0])
        del self._audit[keep:]

    def _audit_picks(self) -> list[_Held]:
        """The closing window's audit frames: audit_share of its picks, the fraction carried over."""
        due = self._audit_credit + self.cfg.audit_share * self.k
        picks = [held for _, held in self._audit[: min(math.floor(due), self.k)]]
        self._audit_credit = due - len(picks) if len(picks) == math.floor(due) else 0.0
        self._audit = []
        return picks

    def flush(self, now_s: float) -> list[Selected]:
        if self._window is None:
            return []
        released = self._close(now_s)
        self._window = None  # the next frame opens a fresh window on the same grid
        return released

    def _choose(self, cands: list[_Held], now_s: float, k: int) -> list[_Held]:
        """The at most k candidates (capture order) of largest total priority, min_gap_s apart."""
        n = len(cands)
        values = [self._priority(c.info.t_s, c.score, now_s) for c in cands]
        # prev[i]: last candidate far enough before i to be chosen together with it (-1: none).
        prev = []
        for i, c in enumerate(cands):
            j = i - 1
            while j >= 0 and c.info.t_s - cands[j].info.t_s < self.min_gap_s:
                j -= 1
            prev.append(j)
        # best[i + 1][m]: best total using candidates[0..i] with at most m picks.
        best = [[0.0] * (k + 1) for _ in range(n + 1)]
        for i in range(n):
            for m in range(1, k + 1):
                take = values[i] + best[prev[i] + 1][m - 1]
                best[i + 1][m] = max(best[i][m], take)
        chosen, i, m = [], n - 1, k
        while i >= 0 and m > 0:
            if best[i + 1][m] == best[i][m]:
                i -= 1
            else:
                chosen.append(cands[i])
                i, m = prev[i], m - 1
        return chosen[::-1]

    def _close(self, now_s: float) -> list[Selected]:
        """Release the window's audit frames, then its chosen candidates (or its fallback frame),
        under the budget."""
        out: list[Selected] = []
        audit = self._audit_picks()
        for held in audit:  # their share of the budget comes first, or they would not be random
            selected = self._release(held.info, held.score, self._encode_held(held), now_s, audit=True)
            if selected is not None:
                out.append(selected)
        audited = {held.info.frame_index for held in audit}
        cands = [self._slots[s] for s in sorted(self._slots) if self._slots[s].info.frame_index not in audited]
        if cands:
            chosen = self._choose(cands, now_s, self.k - len(audit))
            chosen.sort(key=lambda c: (-self._priority(c.info.t_s, c.score, now_s), -c.info.t_s))
            for cand in chosen:
                selected = self._release(cand.info, cand.score, self._encode_held(cand), now_s)
                if selected is not None:
                    out.append(selected)
        elif self._fallback is not None and not audit:  # audit frames keep the same trickle going
            fb = self._fallback
            selected = self._release(fb.info, 0.0, self._encode_held(fb), now_s)
            if selected is not None:
                out.append(selected)
        self._slots = {}
        self._fallback = None
        out.sort(key=lambda s: s.info.t_s)
        if out:
            self._last_selected_t = out[-1].info.t_s
        return out


class UniformSampler(Sampler):
    """The traditional baseline: evenly spaced frames (window_s / k apart) under the same
    budget, ignoring scores (they are still computed, for reporting)."""

    def __init__(self, cfg: SamplerConfig) -> None:
        super().__init__(cfg)
        self.spacing_s = cfg.window_s / self.window_count
        self._last_release_t: float | None = None
        self._refused_bytes = 0  # size of the last frame the byte budget refused

    def offer(self, info: FrameInfo, frame: np.ndarray) -> list[Selected]:
        check_frame(frame)
        score = self._observe(info)
        t = info.t_s
        if self._burst_pending:
            self._start_burst(t, t + self.cfg.burst_s)
        spacing = self.spacing_s / self.budget.factor_at(t)
        if self._last_release_t is not None and t - self._last_release_t < spacing:
            return []
        # Do not encode a frame the budget cannot take (the last refused size is the estimate).
        if not self.budget.fits(t, min(self._refused_bytes, int(self.budget.max_bytes))):
            return []
        enc = self._encode(frame)
        selected = self._release(info, score, enc, t)
        if selected is None:
            self._refused_bytes = len(enc.jpeg)
            return []
        self._refused_bytes = 0
        self._last_release_t = t
        return [selected]

    def flush(self, now_s: float) -> list[Selected]:
        return []  # releases as it goes; nothing is held


class AdaptiveRateSampler(UniformSampler):
    """Shoggoth-style adaptive frame sampling (DAC'23): evenly spaced frames at a rate that follows
    how hard the scene is for the student (a running mean of the inference score), between a
    quarter of the budget and all of it. It never exceeds the same upload budget.
    """

    MIN_RATE_SHARE = 0.25
    SCORE_EMA = 0.1  # per frame

    def __init__(self, cfg: SamplerConfig) -> None:
        super().__init__(cfg)
        self.base_spacing_s = self.spacing_s
        self.difficulty = 1.0  # start at full rate until the scene is known

    def offer(self, info: FrameInfo, frame: np.ndarray) -> list[Selected]:
        score = inference_score(info.scores, self.cfg, self.expected_sure)
        self.difficulty += self.SCORE_EMA * (score - self.difficulty)
        share = self.MIN_RATE_SHARE + (1 - self.MIN_RATE_SHARE) * self.difficulty
        self.spacing_s = self.base_spacing_s / share
        return super().offer(info, frame)


SAMPLERS: dict[str, type[Sampler]] = {
    "edgesync": EdgeSyncSampler,
    "uniform": UniformSampler,
    "adaptive": AdaptiveRateSampler,
}


def build_sampler(cfg: SamplerConfig) -> Sampler:
    """The sampler named by cfg.type."""
    try:
        cls = SAMPLERS[cfg.type]
    except KeyError:
        raise ConfigError(f"sampler.type: unknown sampler {cfg.type!r}; known: {sorted(SAMPLERS)}") from None
    return cls(cfg)
