"""The benchmark's arithmetic: link queueing, what a training budget buys, and the reported metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesync.drift import DriftSchedule
from edgesync_bench.costs import CostModel, Link
from edgesync_bench.metrics import first_seconds_by_segment, segment_update_delays, windows
from edgesync_bench.stream import FrameResult, StrategyRun, UpdateResult

PERSON = np.array([[10, 10, 50, 90, 0, 0.9]], dtype=np.float32)
NOTHING = np.zeros((0, 6), dtype=np.float32)


# ---------------------------------------------------------------- links


def test_link_delivers_after_transmission_plus_half_the_round_trip() -> None:
    link = Link(kbit_per_s=8, rtt_s=0.2)  # 1000 bytes take 1 s
    assert link.send(5.0, 1000) == pytest.approx(5.0 + 1.0 + 0.1)
    assert link.bytes_sent == 1000


def test_link_queues_sends_first_in_first_out() -> None:
    link = Link(kbit_per_s=8, rtt_s=0.0)
    first = link.send(0.0, 1000)
    second = link.send(0.5, 500)  # waits for the first to finish at 1.0, then takes 0.5 s
    assert (first, second) == pytest.approx((1.0, 1.5))
    assert link.bytes_sent == 1500


def test_a_control_message_does_not_wait_behind_queued_bulk_bytes() -> None:
    link = Link(kbit_per_s=8, rtt_s=0.2)
    assert link.send(0.0, 5000) == pytest.approx(5.1)  # 5 s of samples on the wire
    assert link.send_control(1.0, 100) == pytest.approx(1.0 + 0.1 + 0.1)
    assert link.send(1.0, 1000) == pytest.approx(6.1)  # the bulk queue is unchanged
    assert link.bytes_sent == 6100


def test_an_idle_link_starts_sending_at_once() -> None:
    link = Link(kbit_per_s=8, rtt_s=0.0)
    link.send(0.0, 1000)
    assert link.send(10.0, 1000) == pytest.approx(11.0)


# ---------------------------------------------------------------- cost model


def test_epochs_within_counts_whole_epochs_after_the_fixed_costs() -> None:
    costs = CostModel()  # 2 s overhead, 0.02 s per held-out prediction, 0.05 s per image-epoch at 320 px
    fixed = costs.job_overhead_s + 2 * 5 * costs.predict_s_per_frame
    per_epoch = 10 * costs.train_s_per_image_epoch
    assert costs.epochs_within(fixed + 3.5 * per_epoch, images=10, heldout_frames=5, imgsz=320) == 3
    assert costs.epochs_within(fixed - 0.1, images=10, heldout_frames=5, imgsz=320) == 0


def test_epochs_cost_four_times_as_much_at_twice_the_image_size() -> None:
    costs = CostModel(job_overhead_s=0.0)
    assert costs.epochs_within(8.0, images=10, heldout_frames=0, imgsz=320) == 16
    assert costs.epochs_within(8.0, images=10, heldout_frames=0, imgsz=640) == 4


def test_a_gpu_speedup_divides_the_virtual_time_of_a_job() -> None:
    cpu, gpu = CostModel(), CostModel(gpu_speedup=4.0)
    assert gpu.training(100, 4, 320) == pytest.approx(cpu.training(100, 4, 320) / 4)
    assert gpu.teacher(10) == pytest.approx(cpu.teacher(10) / 4)


@given(
    budget=st.floats(0.0, 500.0),
    images=st.integers(1, 200),
    held=st.integers(0, 50),
    imgsz=st.sampled_from([64, 96, 320, 640]),
    speedup=st.sampled_from([1.0, 2.5, 10.0]),
    distill=st.sampled_from(["off", "attention", "attention+generative"]),
    recal=st.integers(0, 60),
)
def test_the_epochs_that_fit_a_budget_never_cost_more_than_it(
    budget: float, images: int, held: int, imgsz: int, speedup: float, distill: str, recal: int
) -> None:
    costs = CostModel(gpu_speedup=speedup)
    epochs = costs.epochs_within(budget, images, held, imgsz, distill=distill, recalibration_frames=recal)
    job = {"distill": distill, "recalibration_frames": recal}
    if epochs >= 1:  # budgets count GPU-seconds at speed-up 1, as the simulation charges them
        assert costs.training(epochs * images, held, imgsz, **job) * speedup <= budget + 1e-9
    assert costs.training((epochs + 1) * images, held, imgsz, **job) * speedup > budget - 1e-9


def test_recalibrating_batch_norm_costs_a_forward_pass_per_frame_and_one_more_validation() -> None:
    costs = CostModel()
    extra = costs.training(100, 8, 320, recalibration_frames=30) - costs.training(100, 8, 320)
    assert extra == pytest.approx((30 + 8) * costs.predict_s_per_frame)


def test_judging_a_job_on_the_scene_its_edge_moved_to_costs_two_models_predicting_each_frame() -> None:
    costs = CostModel()
    extra = costs.training(100, 8, 320, new_scene_frames=12) - costs.training(100, 8, 320)
    assert extra == pytest.approx(2 * 12 * costs.predict_s_per_frame)


def test_a_distilled_epoch_costs_the_teachers_pass_too_so_fewer_fit_a_budget() -> None:
    costs = CostModel(job_overhead_s=0.0)
    plain, attention = costs.training(100, 0, 320), costs.training(100, 0, 320, distill="attention")
    generative = costs.training(100, 0, 320, distill="attention+generative")
    assert plain < attention < generative
    assert attention - plain == pytest.approx(100 * costs.distill_attention_s_per_image_epoch)
    # a warm-up that skipped the teacher for half the image-epochs is charged only the other half
    half = costs.training(100, 0, 320, distill="attention", distilled_image_epochs=50)
    assert half == pytest.approx((plain + attention) / 2)
    assert costs.epochs_within(10.0, 10, 0, 320, distill="attention") < costs.epochs_within(10.0, 10, 0, 320)


# ---------------------------------------------------------------- windows


def _frame(t: float, segment: str, version: int = 1, hit: bool = True) -> FrameResult:
    return FrameResult(t, segment, version, PERSON if hit else NOTHING, PERSON)


def test_first_seconds_score_only_the_start_of_each_segment() -> None:
    # night: hits for its first 3 s, misses after; fog: misses first, hits after
    frames = [_frame(t, "night", hit=t < 3) for t in range(10)] + [_frame(t, "fog", hit=t >= 13) for t in range(10, 20)]
    early = first_seconds_by_segment(frames, 3.0, num_classes=2)
    assert early == pytest.approx({"night": 1.0, "fog": 0.0})


def test_windows_cut_every_window_s_and_at_every_segment_change() -> None:
    frames = [_frame(t, "clean" if t < 4 else "night", version=1 if t < 8 else 2) for t in range(10)]
    wins = windows(frames, window_s=3.0, num_classes=2)
    assert [(w["t_s"], w["segment"], w["frames"]) for w in wins] == [
        (0, "clean", 3),
        (3, "clean", 1),
        (4, "night", 3),
        (7, "night", 3),
    ]
    assert [w["model_version"] for w in wins] == [1, 1, 1, 2]  # the version at the window's end


def test_window_map50_is_one_for_perfect_frames_and_zero_for_missed_ones() -> None:
    frames = [_frame(0.0, "clean"), _frame(1.0, "clean"), _frame(2.0, "night", hit=False)]
    wins = windows(frames, window_s=10.0, num_classes=2)
    assert [w["map50"] for w in wins] == [pytest.approx(1.0), pytest.approx(0.0)]


def test_no_frames_make_no_windows() -> None:
    assert windows([], window_s=5.0, num_classes=2) == []


# ---------------------------------------------------------------- update delays

SCHEDULE = DriftSchedule.model_validate(
    {
        "segments": [
            {"until_s": 10, "condition": "clean"},
            {"until_s": 20, "condition": "night"},
            {"until_s": 30, "condition": "fog"},
        ]
    }
)


def _update(deployed_at: float, trained_until: float) -> UpdateResult:
    return UpdateResult(2, deployed_at, trained_until, deployed_at - trained_until, 1000)


def test_update_delay_runs_from_a_segments_first_arrival_to_the_first_model_trained_on_it() -> None:
    run = StrategyRun("x", arrivals=[(11.0, 12.0), (12.0, 12.5), (14.0, 14.5)])
    run.updates = [_update(deployed_at=13.0, trained_until=11.9), _update(deployed_at=16.0, trained_until=12.5)]
    # the first update was trained before any night sample arrived; the second counts
    assert segment_update_delays(run, SCHEDULE, eval_from_s=0.0) == [pytest.approx(4.0)]


def test_a_segment_whose_update_lands_after_it_ended_has_no_delay() -> None:
    run = StrategyRun("x", arrivals=[(21.0, 22.0)], updates=[_update(deployed_at=31.0, trained_until=22.0)])
    assert segment_update_delays(run, SCHEDULE, eval_from_s=0.0) == []


def test_clean_segments_and_segments_before_evaluation_starts_are_not_scored() -> None:
    run = StrategyRun(
        "x",
        arrivals=[(1.0, 1.5), (11.0, 11.5), (21.0, 21.5)],
        updates=[_update(deployed_at=3.0, trained_until=1.5), _update(deployed_at=15.0, trained_until=11.5)],
    )
    run.updates.append(_update(deployed_at=25.0, trained_until=21.5))
    assert segment_update_delays(run, SCHEDULE, eval_from_s=0.0) == [pytest.approx(3.5), pytest.approx(3.5)]
    assert segment_update_delays(run, SCHEDULE, eval_from_s=15.0) == [pytest.approx(3.5)]


def test_job_orders_rank_by_arrival_or_by_training_time_so_far() -> None:
    from edgesync.types import TrainingJob
    from edgesync_bench.strategies import queue_priority

    old = TrainingJob("a-1", "cam-a", priority=0.9, created=10.0, base_version=1)
    new = TrainingJob("b-1", "cam-b", priority=0.1, created=20.0, base_version=1)
    assert queue_priority("fifo", old, {}) > queue_priority("fifo", new, {})
    spent = {"cam-a": 30.0, "cam-b": 5.0}  # cam-b has had less of the worker: fair serves it first
    assert queue_priority("fair", new, spent) > queue_priority("fair", old, spent)
    assert queue_priority("fair", old, {}) > queue_priority("fair", new, {})  # equal time: first come
    with pytest.raises(ValueError, match="lottery"):
        queue_priority("lottery", old, {})


def test_the_plotted_timeline_breaks_where_no_frame_was_scored() -> None:
    import math

    from edgesync_bench.report import timeline_line

    # 10 fps: two contiguous 10 s windows, then nothing scored for 20 s, then one 5 s window
    frames = [FrameResult(i / 10, "clean", 1, PERSON, PERSON) for i in (*range(0, 200), *range(400, 450))]
    xs, ys = timeline_line(windows(frames, 10.0, 1), fps=10)
    assert xs == pytest.approx([0, 10, 10, 20, 20, 40, 45])
    assert [math.isnan(y) for y in ys] == [False, False, False, False, True, False, False]
