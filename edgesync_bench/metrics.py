"""From what a strategy did to the numbers the benchmark reports."""

from __future__ import annotations

import statistics

import numpy as np

from edgesync.drift import DriftSchedule
from edgesync.evaluation import map50
from edgesync_bench.stream import FrameResult, StrategyRun


def windows(frames: list[FrameResult], window_s: float, num_classes: int) -> list[dict]:
    """mAP50 per window of window_s stream seconds, cut also where the drift segment changes."""
    out: list[dict] = []
    current: list[FrameResult] = []

    def close() -> None:
        if current:
            out.append(
                {
                    "t_s": round(current[0].t_s, 2),
                    "segment": current[0].segment,
                    "map50": map50([f.pred for f in current], [f.truth for f in current], num_classes),
                    "model_version": current[-1].model_version,
                    "frames": len(current),
                }
            )

    for frame in frames:
        if current and (frame.segment != current[0].segment or frame.t_s >= current[0].t_s + window_s):
            close()
            current = []
        current.append(frame)
    close()
    return out


def _weighted_mean(items: list[dict]) -> float | None:
    total = sum(w["frames"] for w in items)
    return sum(w["map50"] * w["frames"] for w in items) / total if total else None


def first_seconds_by_segment(frames: list[FrameResult], seconds: float, num_classes: int) -> dict[str, float]:
    """mAP50 over the first `seconds` of each drift segment: how fast accuracy recovers after a change."""
    by_segment: dict[str, list[FrameResult]] = {}
    for frame in frames:
        by_segment.setdefault(frame.segment, []).append(frame)
    out = {}
    for name, items in by_segment.items():
        early = [f for f in items if f.t_s < items[0].t_s + seconds]
        out[name] = map50([f.pred for f in early], [f.truth for f in early], num_classes)
    return out


def segment_update_delays(run: StrategyRun, schedule: DriftSchedule, eval_from_s: float) -> list[float]:
    """Per drift segment: first arrival of a sample captured in it -> first model trained on it deployed."""
    delays = []
    starts = schedule.boundaries()
    for index, start in enumerate(starts):
        end = schedule.segments[index].until_s
        if start < eval_from_s or schedule.segments[index].label == "clean":
            continue
        arrivals = [a for captured, a in run.arrivals if start <= captured < end]
        if not arrivals:
            continue
        first = min(arrivals)
        deployed = [u.deployed_at for u in run.updates if u.trained_until >= first and u.deployed_at >= first]
        if deployed and min(deployed) < end:
            delays.append(min(deployed) - first)
    return delays


def summarise(
    run: StrategyRun,
    schedule: DriftSchedule,
    eval_from_s: float,
    window_s: float,
    num_classes: int,
    duration_s: float | None = None,
) -> dict:
    """The strategy's entry in results.json (link rates need the stream's duration_s)."""
    wins = windows(run.frames, window_s, num_classes)
    by_segment: dict[str, list[dict]] = {}
    for w in wins:
        by_segment.setdefault(w["segment"], []).append(w)
    seg_delays = segment_update_delays(run, schedule, eval_from_s)
    update_delays = [u.delay_s for u in run.updates]
    update_bytes = [u.bytes for u in run.updates]
    return {
        "map50_mean": _weighted_mean(wins),
        "map50_by_segment": {name: _weighted_mean(items) for name, items in by_segment.items()},
        "map50_first30_by_segment": first_seconds_by_segment(run.frames, 30.0, num_classes),
        "update_delay_s_median": statistics.median(seg_delays) if seg_delays else None,
        "update_delay_s_per_segment": [round(d, 2) for d in seg_delays],
        "upload_to_deploy_s_median": statistics.median(update_delays) if update_delays else None,
        "updates": len(run.updates),
        "uplink_bytes": run.uplink_bytes,
        "downlink_bytes": run.downlink_bytes,
        "downlink_bytes_per_update_median": statistics.median(update_bytes) if update_bytes else None,
        "update_bytes": update_bytes,
        "downlink_bytes_per_camera_hour": None if not duration_s else run.downlink_bytes / duration_s * 3600,
        # uplink plus downlink, averaged over the stream, for this one camera
        "link_kbit_s": None if not duration_s else (run.uplink_bytes + run.downlink_bytes) * 8 / 1000 / duration_s,
        "samples_uploaded": run.samples,
        "audit_samples_uploaded": run.audit_samples,
        "train_iterations": run.train_iterations,
        "train_gpu_s": round(run.train_gpu_s, 2),
        "jobs": run.jobs,
        "frames": len(run.frames),
        "timeline": wins,
        "update_times_s": [round(u.deployed_at, 2) for u in run.updates],
        "scene_changes_s": [round(t, 2) for t in run.scene_changes],
        # a specialist the zoo sent back for a returning scene: running this long after the edge saw the change
        "zoo_delays_s": [round(u.deployed_at - u.chosen_for, 2) for u in run.updates if u.zoo_of and u.chosen_for],
        "zoo_updates": sum(1 for u in run.updates if u.zoo_of),
    }


def mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
