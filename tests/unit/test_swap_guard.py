"""The edge rolls back a model that collapses on its own frames, and never takes it again."""

from __future__ import annotations

import copy

import torch

from edge_agent.hotswap import HotSwapDetector
from edge_agent.swap_guard import SwapGuard
from edgesync.student import StudentModel


def _feed(guard: SwapGuard, value: float, frames: int):
    found = None
    for _ in range(frames):
        found = guard.observe(value) or found
    return found


def test_a_model_whose_confidence_collapses_is_flagged_once() -> None:
    guard = SwapGuard(window_frames=10, collapse_ratio=0.5)
    _feed(guard, 0.6, 10)
    guard.swapped(7)
    collapse = _feed(guard, 0.1, 10)
    assert collapse is not None and collapse.version == 7
    assert (round(collapse.before, 3), round(collapse.after, 3)) == (0.6, 0.1)
    assert _feed(guard, 0.1, 30) is None  # judged once per swap


def test_a_model_as_confident_or_a_start_without_history_is_kept() -> None:
    guard = SwapGuard(window_frames=10, collapse_ratio=0.5)
    _feed(guard, 0.6, 10)
    guard.swapped(2)
    assert _feed(guard, 0.45, 10) is None  # 75 % of before: fine
    fresh = SwapGuard(window_frames=10)
    _feed(fresh, 0.6, 3)
    fresh.swapped(3)  # too few frames before the swap to judge by
    assert _feed(fresh, 0.0, 10) is None
    dark = SwapGuard(window_frames=10, min_confidence=0.05)
    _feed(dark, 0.01, 10)
    dark.swapped(4)  # the old model found nothing either: nothing to lose
    assert _feed(dark, 0.0, 10) is None


def test_a_rolled_back_version_is_never_swapped_in_again() -> None:
    torch.manual_seed(0)
    old = StudentModel.fresh(["person"], 64, version=1)
    new = copy.copy(old)
    new.version = 2
    newer = copy.copy(old)
    newer.version = 3
    detector = HotSwapDetector(old)
    detector.offer(new)
    assert detector.swap_if_ready().version == 2
    assert detector.rollback() == 1 and detector.refused == {2}
    detector.offer(new)  # the subscription sends it again after a reconnect
    assert detector.swap_if_ready() is None and detector.version == 1
    detector.offer(newer)
    assert detector.swap_if_ready().version == 3
