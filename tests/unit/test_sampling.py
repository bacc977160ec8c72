"""Frame sampler: scores, timeliness, budgets, diversity; synthetic frames only."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesync.config import SamplerConfig
from edgesync.errors import ConfigError, InvalidInput
from edgesync.sampling import (
    SAMPLERS,
    EdgeSyncSampler,
    FrameInfo,
    Sampler,
    Selected,
    UniformSampler,
    audit_draw,
    build_sampler,
    collapse_score,
    inference_score,
    timeliness,
    uncertainty_score,
)
from edgesync.types import Detection
from edgesync.uploads import UploadBudget, encode_jpeg, window_budget

FPS = 10.0
CONFIDENT = [0.9, 0.85, 0.95]  # three sure boxes, nothing borderline
BORDERLINE = [0.45, 0.5, 0.4]  # three boxes the student cannot decide on


def cfg(**over: object) -> SamplerConfig:
    """A sampler config; without audit frames unless asked, so picks on merit can be counted."""
    return SamplerConfig(**({"audit_share": 0.0} | over))


def frame_pool(n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Frames whose JPEG sizes differ (more noise, more bytes)."""
    rng = np.random.default_rng(seed)
    base = np.full((96, 128, 3), 120, np.uint8)
    return [np.clip(base + rng.normal(0, 4 + 8 * i, base.shape), 0, 255).astype(np.uint8) for i in range(n)]


FRAMES = frame_pool()


def info(i: int, scores: list[float], fps: float = FPS) -> FrameInfo:
    return FrameInfo(t_s=i / fps, frame_index=i, scores=np.asarray(scores))


def run(sampler: Sampler, stream: list[tuple[FrameInfo, np.ndarray]], flush: bool = True) -> list[Selected]:
    """Feed a stream; every released frame must be released no later than the stream time."""
    out: list[Selected] = []
    for fi, frame in stream:
        released = sampler.offer(fi, frame)
        for sel in released:
            assert sel.info.t_s <= sel.released_s <= fi.t_s + 1e-9
        out.extend(released)
    if flush and stream:  # at the end of the stream: one frame interval after the last frame
        out.extend(sampler.flush(stream[-1][0].t_s + 1 / FPS))
    return out


def random_stream(seconds: float, seed: int = 1) -> list[tuple[FrameInfo, np.ndarray]]:
    rng = np.random.default_rng(seed)
    stream = []
    for i in range(int(seconds * FPS)):
        scores = rng.uniform(0.05, 1.0, size=rng.integers(0, 8))
        stream.append((info(i, list(scores)), FRAMES[i % len(FRAMES)]))
    return stream


def assert_within_budget(selected: list[Selected], c: SamplerConfig) -> None:
    """Every interval (t - window_s, t] of release times holds at most the window's budget."""
    max_count, max_bytes = window_budget(c)
    times = sorted((s.released_s, s.nbytes) for s in selected)
    for i, (t, _) in enumerate(times):
        inside = [b for (u, b) in times[: i + 1] if t - u < c.window_s]
        assert len(inside) <= max_count, f"{len(inside)} samples in the window ending {t}"
        assert sum(inside) <= max_bytes, f"{sum(inside)} bytes in the window ending {t}"


# ---------------------------------------------------------------- scores


def test_borderline_boxes_score_higher_than_confident_ones() -> None:
    c = cfg()
    assert uncertainty_score(np.asarray(CONFIDENT), c) == 0.0
    assert uncertainty_score(np.asarray(BORDERLINE), c) > 0.9
    # Boxes below conf_low are background noise, not uncertainty.
    assert uncertainty_score(np.asarray([0.06, 0.1, 0.2]), c) == 0.0


def test_more_borderline_boxes_score_higher_up_to_top_k() -> None:
    c = cfg(uncertainty_top_k=3)
    one, two, three, four = (uncertainty_score(np.full(n, 0.5), c) for n in (1, 2, 3, 4))
    assert one < two < three == pytest.approx(1.0)
    assert four == pytest.approx(three)


def test_collapse_from_five_sure_boxes_to_none_scores_high() -> None:
    c = cfg()
    assert inference_score(np.asarray([]), c, expected_sure=5.0) == pytest.approx(1.0)
    assert collapse_score(4, 5.0) == pytest.approx(0.2)
    assert collapse_score(5, 5.0) == 0.0
    assert collapse_score(0, 0.5) == pytest.approx(0.5)  # a sparse scene going empty is no collapse

    sampler = EdgeSyncSampler(cfg(max_samples_per_s=0.1))  # one sample per 10 s window
    steady = [(info(i, [0.9, 0.8, 0.85, 0.95, 0.7]), FRAMES[0]) for i in range(60)]
    collapsed = (info(60, [0.1, 0.2]), FRAMES[1])
    after = [(info(i, [0.9, 0.8, 0.85, 0.95, 0.7]), FRAMES[0]) for i in range(61, 100)]
    selected = run(sampler, [*steady, collapsed, *after])
    assert sampler.expected_sure == pytest.approx(5.0, abs=0.5)
    assert [s.info.frame_index for s in selected if s.score > 0] == [60]
    assert selected[-1].score > 0.9


def test_noisy_or_lets_either_signal_alone_make_a_frame_informative() -> None:
    c = cfg()
    only_uncertain = inference_score(np.asarray(BORDERLINE + CONFIDENT), c, expected_sure=3.0)
    both = inference_score(np.asarray(BORDERLINE), c, expected_sure=3.0)
    assert 0.9 < only_uncertain < both <= 1.0


def test_timeliness_halves_at_half_life() -> None:
    c = cfg(timeliness_half_life_s=30.0)
    assert timeliness(100.0, 100.0, c) == pytest.approx(1.0)
    assert timeliness(100.0, 130.0, c) == pytest.approx(0.5)
    assert timeliness(100.0, 160.0, c) == pytest.approx(0.25)


def test_frames_before_a_scene_change_are_stale() -> None:
    c = cfg(stale_weight=0.1)
    assert timeliness(10.0, 20.0, c, scene_change_s=15.0) == pytest.approx(0.1 * timeliness(10.0, 20.0, c))
    assert timeliness(16.0, 20.0, c, scene_change_s=15.0) == pytest.approx(timeliness(16.0, 20.0, c))


def test_frames_before_a_scene_change_lose_priority_in_the_sampler() -> None:
    c = cfg(max_samples_per_s=0.1, burst_factor=1.0)  # k = 1, and no upload burst after the change
    before = [(info(i, CONFIDENT), FRAMES[2]) for i in range(10)]
    early = (info(10, CONFIDENT + BORDERLINE), FRAMES[0])  # very uncertain, t = 1 s
    fill = [(info(i, CONFIDENT), FRAMES[2]) for i in range(11, 80)]
    late = (info(80, [*CONFIDENT, 0.5]), FRAMES[1])  # mildly uncertain, t = 8 s
    closer = (info(100, CONFIDENT), FRAMES[2])  # opens the next window

    plain = EdgeSyncSampler(c)
    assert [s.info.frame_index for s in run(plain, [*before, early, *fill, late, closer])] == [10]

    changed = EdgeSyncSampler(c)
    run(changed, [*before, early, *fill], flush=False)
    changed.mark_scene_change(5.0)
    assert [s.info.frame_index for s in run(changed, [late, closer], flush=False)] == [80]


def test_uploads_carry_the_start_of_the_scene_they_were_captured_in() -> None:
    c = cfg(max_samples_per_s=1.0, burst_factor=1.0)
    sampler = EdgeSyncSampler(c)
    assert sampler.scene_start_of(3.0) is None
    sampler.mark_scene_change(5.0)
    sampler.mark_scene_change(2.0)  # out of order: ignored, scene changes only move forward
    sampler.mark_scene_change(12.0)
    assert [sampler.scene_start_of(t) for t in (1.0, 5.0, 11.9, 30.0)] == [None, 5.0, 5.0, 12.0]
    stream = [(info(i, CONFIDENT + BORDERLINE), FRAMES[i % len(FRAMES)]) for i in range(40, 140)]
    selected = run(sampler, stream)
    assert selected
    for s in selected:
        expected = 5.0 if s.info.t_s < 12.0 else 12.0
        assert s.scene_start_s == expected
        assert s.to_sample("id", "cam", 1, origin_s=1000.0).scene_start == 1000.0 + expected


def test_a_new_scene_makes_every_frame_a_candidate_until_a_model_for_it_arrives() -> None:
    c = cfg(max_samples_per_s=1.0, novelty_prior=0.5, burst_factor=1.0)
    confident = [(info(i, CONFIDENT), FRAMES[i % len(FRAMES)]) for i in range(0, 100)]
    sampler = EdgeSyncSampler(c)
    assert len(run(sampler, confident, flush=False)) <= 1  # nothing informative: one trickle frame
    sampler.mark_scene_change(10.0)
    scene = [(info(i, CONFIDENT), FRAMES[i % len(FRAMES)]) for i in range(100, 201)]  # 200 closes the window
    selected = [s for s in run(sampler, scene, flush=False) if s.info.t_s >= 10.0]
    assert len(selected) == c.max_samples_per_s * c.window_s  # the whole budget on the new scene
    assert all(s.score == pytest.approx(0.5) for s in selected)
    sampler.model_updated(10.0)  # a model trained on this scene is deployed
    assert not sampler.is_novel(25.0)
    later = [(info(i, CONFIDENT), FRAMES[i % len(FRAMES)]) for i in range(201, 301)]
    assert len(run(sampler, later, flush=False)) <= 1


def _informative_stream(first: int, last: int) -> list[tuple[FrameInfo, np.ndarray]]:
    return [(info(i, CONFIDENT + BORDERLINE), FRAMES[i % len(FRAMES)]) for i in range(first, last)]


def _released_in(selected: list[Selected], start: float, end: float) -> int:
    return sum(start < s.released_s <= end for s in selected)


def test_a_scene_change_uploads_the_new_scene_sooner_and_pays_the_burst_back() -> None:
    c = cfg(max_samples_per_s=1.0, max_bytes_per_s=1e9, burst_factor=2.0, burst_s=10.0)  # k = 10 per 10 s
    plain, bursting = EdgeSyncSampler(c), EdgeSyncSampler(c)
    before, after = _informative_stream(0, 500), _informative_stream(500, 1200)  # change at t = 50 s
    plain_out = run(plain, before, flush=False) + run(plain, after)
    burst_out = run(bursting, before, flush=False)
    bursting.mark_scene_change(50.0)
    burst_out += run(bursting, after)

    assert _released_in(plain_out, 50, 60) == 10
    assert _released_in(burst_out, 50, 60) == 20  # the new scene's first window: twice the budget
    assert all(s.info.t_s >= 50.0 for s in burst_out if 50 < s.released_s <= 60)
    assert _released_in(burst_out, 60, 70) == 0  # paid back in the window after
    assert _released_in(burst_out, 50, 120) == _released_in(plain_out, 50, 120) == 70
    assert len(burst_out) == len(plain_out)  # the same budget over the stream, spent sooner


def test_uniform_sampler_halves_its_spacing_during_a_burst() -> None:
    sampler = UniformSampler(cfg(type="uniform", max_samples_per_s=0.5, burst_factor=2.0, burst_s=10.0))
    stream = [(info(i, CONFIDENT), FRAMES[0]) for i in range(400)]
    out = run(sampler, stream[:200], flush=False)
    sampler.mark_scene_change(20.0)
    out += run(sampler, stream[200:])
    times = [s.info.t_s for s in out]
    assert [t for t in times if 20 <= t <= 30] == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0]
    assert len([t for t in times if 30 < t <= 40]) < 5  # paid back: fewer than the 5 of a window
    plain = run(UniformSampler(cfg(type="uniform", max_samples_per_s=0.5)), stream)
    assert len(times) <= len(plain) + 5  # at most the one window's worth that was borrowed


# ---------------------------------------------------------------- selection


def test_window_of_borderline_frames_preferred_over_confident_ones() -> None:
    sampler = EdgeSyncSampler(cfg(max_samples_per_s=0.3))  # k = 3 per 10 s window
    borderline_at = {10, 40, 70}
    stream = [(info(i, BORDERLINE if i in borderline_at else CONFIDENT), FRAMES[0]) for i in range(100)]
    selected = run(sampler, stream)
    assert {s.info.frame_index for s in selected} == borderline_at
    assert all(s.score > 0.9 for s in selected)
    assert [s.info.t_s for s in selected] == sorted(s.info.t_s for s in selected)


def test_window_with_nothing_informative_sends_only_its_freshest_frame() -> None:
    sampler = EdgeSyncSampler(cfg(max_samples_per_s=1.0))  # k = 10
    stream = [(info(i, CONFIDENT), FRAMES[0]) for i in range(101)]  # frame 100 opens window 2
    selected = run(sampler, stream, flush=False)
    assert [s.info.frame_index for s in selected] == [99]
    assert selected[0].score == 0.0


def test_selected_frames_are_spaced_by_the_diversity_gap() -> None:
    c = cfg(max_samples_per_s=0.4)  # k = 4, gap = 10 / 8 = 1.25 s
    sampler = EdgeSyncSampler(c)
    assert sampler.min_gap_s == pytest.approx(1.25)
    burst = set(range(20, 30))  # one second of very uncertain frames
    stream = [(info(i, BORDERLINE if i in burst else [0.5]), FRAMES[0]) for i in range(300)]
    selected = run(sampler, stream)
    times = [s.info.t_s for s in selected]
    assert all(b - a >= sampler.min_gap_s - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert sum(1 for s in selected if s.info.frame_index in burst) == 1
    assert len(selected) == 4 * 3  # the gap still leaves room for the whole budget


def test_uniform_sampler_spaces_frames_evenly_and_ignores_scores() -> None:
    sampler = UniformSampler(cfg(type="uniform", max_samples_per_s=0.5))  # k = 5, every 2 s
    stream = [(info(i, BORDERLINE if i % 7 == 0 else CONFIDENT), FRAMES[0]) for i in range(200)]
    selected = run(sampler, stream)
    assert [s.info.frame_index for s in selected] == list(range(0, 200, 20))


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_budgets_honoured_over_a_long_stream(kind: str, bound: str) -> None:
    sizes = [len(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]) for f in FRAMES]
    window_s = 10.0
    if bound == "count":
        c = cfg(type=kind, max_samples_per_s=0.5, max_bytes_per_s=10 * max(sizes), window_s=window_s)
    else:  # bytes allow ~3 average frames per window while the count allows 10
        c = cfg(type=kind, max_samples_per_s=1.0, max_bytes_per_s=3 * np.mean(sizes) / window_s)
    sampler = build_sampler(c)
    seconds = 600.0
    selected = run(sampler, random_stream(seconds))
    assert_within_budget(selected, c)
    assert sampler.stats.selected == len(selected)
    assert sampler.stats.bytes_selected == sum(s.nbytes for s in selected)
    assert sampler.stats.frames_scored == int(seconds * FPS)
    if kind == "adaptive":
        return  # it spends less on easy scenes by design; see the adaptive-rate test
    # The budget is used, not just respected.
    max_count, max_bytes = window_budget(c)
    windows = seconds / window_s
    if bound == "count":
        assert len(selected) >= 0.9 * max_count * windows
    else:
        assert sum(s.nbytes for s in selected) >= 0.6 * max_bytes * windows


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 5, allow_nan=False), st.integers(0, 500)),
        min_size=1,
        max_size=80,
    )
)
def test_upload_budget_caps_every_sliding_window(steps: list[tuple[float, int]]) -> None:
    budget = UploadBudget(window_s=2.0, max_count=3, max_bytes=1000)
    t, taken = 0.0, []
    for dt, nbytes in steps:
        t += dt
        stamp = budget.take(t, nbytes)
        if stamp is not None:
            taken.append((stamp, nbytes))
    for stamp, _ in taken:
        inside = [b for (u, b) in taken if u <= stamp and stamp - u < 2.0]
        assert len(inside) <= 3 and sum(inside) <= 1000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.integers(0, 500), st.booleans()),
        min_size=1,
        max_size=120,
    ),
    st.floats(1.0, 4.0),
)
def test_bursts_raise_the_caps_but_not_the_long_run_rate(steps: list[tuple[float, int, bool]], factor: float) -> None:
    window_s, count, nbytes, burst_s = 2.0, 3, 1000, 4.0
    budget = UploadBudget(window_s=window_s, max_count=count, max_bytes=nbytes)
    t, taken = 0.0, []
    for dt, size, change in steps:
        t += dt
        if change:
            budget.burst(t, t + burst_s, factor)
        stamp = budget.take(t, size)
        if stamp is not None:
            taken.append((stamp, size))
    debt = (factor - 1) * burst_s / window_s  # windows' worth one burst may borrow
    for i, (start, _) in enumerate(taken):
        for end, _ in taken[i:]:
            inside = [b for (u, b) in taken if start <= u <= end]
            allowed = 1 + debt + (end - start) / window_s  # windows' worth: one, the debt, the rate
            assert len(inside) <= allowed * count + 1e-6
            assert sum(inside) <= allowed * nbytes + 1e-6
        inside = [b for (u, b) in taken if start - window_s < u <= start]
        assert len(inside) <= factor * count + 1e-6 and sum(inside) <= factor * nbytes + 1e-6


def test_unused_budget_does_not_accumulate() -> None:
    budget = UploadBudget(window_s=10.0, max_count=2, max_bytes=1e9)
    assert budget.take(0.0, 1) is not None
    # 100 quiet seconds later, a burst still gets only one window's worth.
    granted = [budget.take(100.0, 1) for _ in range(5)]
    assert sum(g is not None for g in granted) == 2


def test_output_is_deterministic() -> None:
    def once() -> list[tuple[int, float, bytes]]:
        sampler = EdgeSyncSampler(cfg(max_samples_per_s=0.5))
        return [(s.info.frame_index, s.priority, s.jpeg) for s in run(sampler, random_stream(120, seed=7))]

    first, second = once(), once()
    assert first and first == second


# ---------------------------------------------------------------- encoding and inputs


def test_frames_are_downscaled_to_max_side_and_boxes_rescale() -> None:
    sampler = UniformSampler(cfg(type="uniform", max_side=640, max_bytes_per_s=1e7))
    frame = np.zeros((720, 1280, 3), np.uint8)
    cv2.rectangle(frame, (100, 100), (300, 200), (255, 255, 255), -1)
    fi = FrameInfo(0.0, 0, np.asarray([0.9]), detections=(Detection(100, 100, 300, 200, 0, 0.9),))
    (sel,) = sampler.offer(fi, frame)
    assert (sel.width, sel.height, sel.scale) == (640, 360, 0.5)
    decoded = cv2.imdecode(np.frombuffer(sel.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, 640, 3)
    assert sel.scaled_detections() == [Detection(50, 50, 150, 100, 0, 0.9)]


@pytest.mark.parametrize(("size", "held_shape"), [((576, 768), (576, 768, 3)), ((1080, 1920), (360, 640, 3))])
def test_the_edgesync_sampler_holds_large_frames_shrunk_and_rescales_their_boxes(size, held_shape) -> None:
    """A frame waiting for its window to close is a copy as it came, or shrunk to max_side when it is
    more than twice that on its longest side (held memory stays bounded); the upload is the same."""
    sampler = EdgeSyncSampler(cfg(max_side=640, max_bytes_per_s=1e7))
    frame = np.zeros((*size, 3), np.uint8)
    cv2.rectangle(frame, (90, 90), (300, 210), (255, 255, 255), -1)
    fi = FrameInfo(0.0, 0, np.asarray(BORDERLINE), detections=(Detection(90, 90, 300, 210, 0, 0.45),))
    assert sampler.offer(fi, frame) == []
    assert [held.frame.shape for held in sampler._slots.values()] == [held_shape]
    (sel,) = sampler.flush(1.0)
    scale = 640 / size[1]
    assert (sel.width, sel.height, sel.scale) == (640, round(size[0] * scale), scale)
    assert sel.scaled_detections() == [Detection(90 * scale, 90 * scale, 300 * scale, 210 * scale, 0, 0.45)]
    assert sel.jpeg == encode_jpeg(frame, sampler.cfg.jpeg_quality, 640).jpeg


def test_only_frames_the_budget_is_asked_for_are_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JPEG encoding costs a quarter of a small student's prediction: the sampler encodes a frame
    when it releases it, not each time a frame becomes its slot's best."""
    import edgesync.sampling as sampling_module

    encoded: list[int] = []
    real = sampling_module.encode_jpeg
    monkeypatch.setattr(sampling_module, "encode_jpeg", lambda frame, *a: encoded.append(1) or real(frame, *a))
    sampler = EdgeSyncSampler(cfg(audit_share=0.1))
    selected = run(sampler, random_stream(60))
    assert selected and len(encoded) == sampler.stats.selected + sampler.stats.skipped_budget < 60 * FPS / 4


def test_build_sampler_picks_the_configured_type() -> None:
    assert isinstance(build_sampler(cfg(type="edgesync")), EdgeSyncSampler)
    assert isinstance(build_sampler(cfg(type="uniform")), UniformSampler)


def test_conf_low_above_conf_high_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="conf_low"):
        build_sampler(cfg(conf_low=0.7, conf_high=0.6))


def test_bad_inputs_are_refused_with_a_message_that_names_them() -> None:
    with pytest.raises(InvalidInput, match="frame 3"):
        FrameInfo(0.0, 3, np.asarray([1.5]))
    with pytest.raises(InvalidInput, match="1-D"):
        FrameInfo(0.0, 3, np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match="not finite"):
        FrameInfo(math.nan, 3, np.asarray([]))
    sampler = EdgeSyncSampler(cfg())
    with pytest.raises(InvalidInput, match="uint8"):
        sampler.offer(info(0, []), np.zeros((8, 8), np.float32))
    sampler.offer(info(5, []), FRAMES[0])
    with pytest.raises(InvalidInput, match="capture order"):
        sampler.offer(info(4, []), FRAMES[0])


def test_adaptive_sampler_uploads_more_when_the_student_struggles() -> None:
    c = cfg(type="adaptive", max_samples_per_s=1.0, window_s=10.0)
    easy = run(build_sampler(c), [(info(i, CONFIDENT), FRAMES[0]) for i in range(int(120 * FPS))])
    hard = run(build_sampler(c), [(info(i, BORDERLINE), FRAMES[0]) for i in range(int(120 * FPS))])
    max_count, _ = window_budget(c)
    assert len(hard) > 1.5 * len(easy)
    assert len(hard) <= max_count * 12 + 1


# ---------------------------------------------------------------- audit frames


def test_audit_draws_are_uniform_and_fixed_by_the_frame_index() -> None:
    draws = np.array([audit_draw(i) for i in range(20_000)])
    assert draws.min() >= 0.0 and draws.max() < 1.0
    counts, _ = np.histogram(draws, bins=10, range=(0.0, 1.0))
    assert counts.min() > 1800 and counts.max() < 2200  # 2000 expected per bin
    assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.03  # neighbours are unrelated
    assert audit_draw(1234) == audit_draw(1234)


def test_audit_frames_take_their_share_of_the_picks_whatever_the_scores() -> None:
    c = cfg(max_samples_per_s=1.0, max_bytes_per_s=1e9, audit_share=0.25)  # k = 10: 2.5 audit picks per window
    sampler = EdgeSyncSampler(c)
    selected = run(sampler, _informative_stream(0, 1200))  # 120 s: 12 windows
    audit = [s for s in selected if s.audit]
    assert len(audit) == 30  # 12 x 2.5, the half picks carried from window to window
    assert len(selected) == 120  # the same budget in all: audit frames replace picks on merit
    assert sampler.stats.audit == 30
    for window in range(12):  # each window's audit frames are its frames with the lowest draws
        frames = range(window * 100, (window + 1) * 100)
        picked = sorted(s.info.frame_index for s in audit if s.info.frame_index in frames)
        assert picked == sorted(sorted(frames, key=audit_draw)[: len(picked)])
    assert all(s.to_sample("id", "cam", 1).audit for s in audit)
    assert not any(s.to_sample("id", "cam", 1).audit for s in selected if not s.audit)


def test_audit_frames_are_sent_from_windows_where_nothing_is_informative() -> None:
    c = cfg(max_samples_per_s=1.0, novelty_prior=0.5, burst_factor=1.0, audit_share=0.2)
    confident = [(info(i, CONFIDENT), FRAMES[i % len(FRAMES)]) for i in range(0, 300)]
    selected = run(EdgeSyncSampler(c), confident)
    assert len(selected) == 6 and all(s.audit for s in selected)  # 2 per window, no fallback frame besides


@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_budgets_honoured_with_audit_frames(bound: str) -> None:
    sizes = [len(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]) for f in FRAMES]
    if bound == "count":
        c = cfg(max_samples_per_s=0.5, max_bytes_per_s=10 * max(sizes), audit_share=0.3)
    else:
        c = cfg(max_samples_per_s=1.0, max_bytes_per_s=3 * np.mean(sizes) / 10.0, audit_share=0.3)
    selected = run(EdgeSyncSampler(c), random_stream(600.0))
    assert_within_budget(selected, c)
    assert any(s.audit for s in selected) and not all(s.audit for s in selected)
