"""Work the edge does on a frame ahead of its loop (EdgeAgent.prepare, on the source's reader thread)
gives the loop exactly what it would have computed itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.agent import EdgeAgent
from edge_agent.sink import JsonlSink
from edge_agent.source import Frame
from edgesync import changepoint
from edgesync.changepoint import Cadence, image_statistics
from edgesync.config import EdgeConfig, QueueConfig, StudentConfig
from edgesync.preprocess import auto_levels
from edgesync.student import StudentModel


@pytest.fixture(scope="module")
def levelled() -> StudentModel:
    torch.manual_seed(0)  # every box kept (conf 0): predictions on levelled and raw frames differ
    return StudentModel.fresh(["person", "car"], 64, version=1, conf=0.0).with_preprocess("auto-levels")


@pytest.fixture
def agent(tmp_path: Path, levelled: StudentModel) -> EdgeAgent:
    cfg = EdgeConfig(
        edge_id="cam-prepare",
        queue=QueueConfig(spill_dir=tmp_path / "spool"),
        model_dir=tmp_path / "models",
        student=StudentConfig(spares=0),
        sink=None,
    )
    agent = EdgeAgent(cfg)
    agent.adopt(levelled)
    yield agent
    agent.spool.close()
    agent.channel.close()


def _frame(index: int, t_s: float) -> Frame:
    rng = np.random.default_rng(index)
    image = (rng.random((96, 128, 3)) * 120 + 40).astype(np.uint8)  # a dim, low-contrast frame: levels matter
    return Frame(index, index, t_s, t_s, image, "live")


def test_prepare_levels_the_frame_for_the_current_model_and_sums_it_up_when_the_watcher_looks(agent) -> None:
    due, skipped = _frame(0, 0.0), _frame(1, 0.1)  # the watcher looks 5 times a second
    agent.prepare(due)
    agent.prepare(skipped)
    assert np.array_equal(due.views["auto-levels"], auto_levels(due.image))
    assert np.array_equal(due.statistics, image_statistics(due.image))
    assert "auto-levels" in skipped.views and skipped.statistics is None


def test_the_loop_uses_what_was_prepared_and_predicts_as_without_it(agent, tmp_path, monkeypatch) -> None:
    frame = _frame(0, 0.0)
    alone = agent.detector.predict(frame.image)
    agent.prepare(frame)
    prepared = agent.detector.predict(frame.image, frame.views)
    assert prepared.detections == alone.detections and np.array_equal(prepared.scores, alone.scores)
    unlevelled = agent.detector.current.with_preprocess("none").predict([frame.image])[0]
    assert unlevelled.detections != alone.detections  # so the view is what made them equal

    def computed_again(image):
        raise AssertionError("the watcher summed up a frame whose statistics were prepared")

    monkeypatch.setattr(changepoint, "image_statistics", computed_again)
    sink = JsonlSink(tmp_path / "frames.jsonl")
    try:
        agent.step(frame, sink)
    finally:
        sink.close()
    assert agent.stats.frames == 1


def test_a_view_for_another_preprocessing_is_not_used(agent, levelled) -> None:
    """A model swapped in after its frame was prepared, that sees frames as they come, ignores the
    levelled view."""
    frame = _frame(0, 0.0)
    agent.prepare(frame)
    plain = levelled.with_preprocess("none")
    agent.adopt(plain)
    seen = agent.detector.predict(frame.image, frame.views).detections
    assert seen == plain.predict([frame.image])[0].detections
    assert seen != levelled.predict([frame.image])[0].detections


def test_two_cadences_shown_the_same_times_take_the_same_frames() -> None:
    times = [i / 25 for i in range(100)] + [10.0, 10.5, 10.51]  # 25 fps, then a jump and a burst
    first, second = Cadence(5.0), Cadence(5.0)
    assert [first.take(t) for t in times] == [second.take(t) for t in times]
    third = Cadence(5.0)
    taken = [t for t in times if third.take(t)]
    assert taken[:3] == [0.0, 0.2, 0.4] and len([t for t in taken if t < 4]) == 20  # 25 fps thinned to 5 Hz
