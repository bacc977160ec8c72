"""Several simulated cameras sharing one cloud: the cameras file, and how their results combine.

A cameras file (configs/bench/four-cameras.yaml) names the footage, the training share of the
one worker they all share, and per camera an edge id, a drift schedule, a seed and where in the
video the camera starts:

    video: vtest.avi
    train_budget_share: 1.0
    cameras:
      - {edge_id: cam-1, drift: configs/bench/cameras/evening.yaml, seed: 1, offset_s: 0}
      - ...

results.json keeps the single-camera schema: `map50_mean` is the mean over cameras, and each
strategy has `per_camera` with every camera's own summary.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgesync.config import EdgeId
from edgesync.errors import ConfigError
from edgesync_bench.report import shade_segments, timeline_line

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class CameraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edge_id: EdgeId
    drift: Path
    seed: int = 0
    offset_s: float = Field(0.0, ge=0)  # where in the video this camera's stream starts


class CamerasFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video: str = "vtest.avi"
    train_budget_share: float | None = Field(None, gt=0)  # the shared worker's GPU share; None: the CLI's
    cameras: list[CameraSpec] = Field(min_length=1)

    @field_validator("cameras")
    @classmethod
    def _unique(cls, cameras: list[CameraSpec]) -> list[CameraSpec]:
        ids = [c.edge_id for c in cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera edge ids must be unique, got {ids}")
        return cameras


def load_cameras(path: Path) -> CamerasFile:
    """The cameras file; drift paths resolve against the current directory, then the file's own."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read cameras file {path}: {exc.strerror}") from None
    try:
        spec = CamerasFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for camera in spec.cameras:
        if not camera.drift.exists() and (Path(path).parent / camera.drift).exists():
            camera.drift = Path(path).parent / camera.drift
        if not camera.drift.exists():
            raise ConfigError(f"{path}: camera {camera.edge_id}: drift schedule {camera.drift} does not exist")
    return spec


def combine(per_camera: dict[str, dict]) -> dict:
    """One strategy's entry over several cameras: means over cameras, totals, and per_camera."""
    cams = list(per_camera.values())

    def mean(key: str) -> float | None:
        values = [c[key] for c in cams if c.get(key) is not None]
        return statistics.fmean(values) if values else None

    segments: dict[str, list[tuple[float, int]]] = {}
    for c in cams:
        for w in c["timeline"]:
            segments.setdefault(w["segment"], []).append((w["map50"], w["frames"]))
    delays = [d for c in cams for d in c["update_delay_s_per_segment"]]
    update_bytes = [b for c in cams for b in c.get("update_bytes", [])]
    return {
        "map50_mean": mean("map50_mean"),  # every camera weighs the same
        "map50_by_segment": {
            name: sum(m * n for m, n in items) / sum(n for _, n in items) for name, items in segments.items()
        },
        "update_delay_s_median": statistics.median(delays) if delays else None,
        "update_delay_s_per_segment": delays,
        "updates": sum(c["updates"] for c in cams),
        "uplink_bytes": sum(c["uplink_bytes"] for c in cams),
        "downlink_bytes": sum(c["downlink_bytes"] for c in cams),
        "downlink_bytes_per_update_median": statistics.median(update_bytes) if update_bytes else None,
        "link_kbit_s": mean("link_kbit_s"),  # per camera
        "samples_uploaded": sum(c["samples_uploaded"] for c in cams),
        "audit_samples_uploaded": sum(c["audit_samples_uploaded"] for c in cams),
        "train_iterations": sum(c["train_iterations"] for c in cams),
        "train_gpu_s": round(sum(c["train_gpu_s"] for c in cams), 2),
        "frames": sum(c["frames"] for c in cams),
        "per_camera": per_camera,
    }


def markdown_table(results: dict) -> str:
    """Mean over cameras and each camera's mAP50 (points), updates and training time per strategy."""
    strategies = results["strategies"]
    cameras = [c["edge_id"] for c in results["cameras"]]
    head = ["strategy", "mAP50 mean", *cameras, "updates", "training GPU-s per camera", "update delay (s, median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pts(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    for name, r in strategies.items():
        per = r["per_camera"]
        gpu = " / ".join(f"{per[c]['train_gpu_s']:.0f}" for c in cameras)
        delay = "–" if r["update_delay_s_median"] is None else f"{r['update_delay_s_median']:.1f}"
        row = [name, pts(r["map50_mean"]), *[pts(per[c]["map50_mean"]) for c in cameras], str(r["updates"]), gpu, delay]
        lines.append("| " + " | ".join(row) + " |")
    budgets = results["budgets"]
    lines.append("")
    lines.append(
        f"{len(cameras)} cameras, {results['duration_s']:.0f} s each of {Path(results['video']).name}, seed "
        f"{results['seed']}, student {results['student_sha256'][:8]}; one worker shared by all: "
        f"{budgets['train_budget_gpu_s']:.0f} GPU-s of training in all; "
        f"every camera {budgets['max_samples_per_s']:g} samples/s and {budgets['max_bytes_per_s'] / 1000:.0f} kB/s up."
    )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Each camera's accuracy over time per strategy, one panel per camera, updates marked."""
    cameras = results["cameras"]
    fig, axes = plt.subplots(len(cameras), 1, figsize=(11, 2.4 * len(cameras)), dpi=100, sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, camera in zip(axes[:, 0], cameras, strict=True):
        shade_segments(ax, camera["segments"], results["duration_s"], fontsize=7)
        for color, (name, r) in zip(colors, results["strategies"].items(), strict=False):
            mine = r["per_camera"][camera["edge_id"]]
            xs, ys = timeline_line(mine["timeline"], results["fps"])
            mean = "–" if mine["map50_mean"] is None else f"{100 * mine['map50_mean']:.1f}"
            ax.plot(xs, ys, color=color, label=f"{name} ({mean})")
            for t in mine["update_times_s"]:
                ax.axvline(t, color=color, alpha=0.35, linestyle=":", linewidth=1)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel(camera["edge_id"], fontsize=9)
        ax.legend(loc="lower left", fontsize=7, ncols=4)
    axes[-1, 0].set_xlabel("stream time (s)")
    fig.suptitle("Cameras sharing one worker: mAP50 vs teacher on the clean frame (dotted: updates)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
