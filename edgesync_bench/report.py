"""The benchmark's plot and markdown table, from results.json."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEGMENT_SHADES = ["#ffffff", "#f2f2f2"]


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f}" if pct else f"{value:.1f}"


def _kilo(value: float | None) -> str:
    return "–" if value is None else f"{value / 1000:.0f}"


def markdown_table(results: dict) -> str:
    """Mean and per-segment mAP50 (points), update delay, updates, bytes, training per strategy."""
    strategies = results["strategies"]
    segments = [s["name"] for s in results["segments"]]
    scored = [s for s in segments if any(s in r["map50_by_segment"] for r in strategies.values())]
    head = [
        "strategy",
        "mAP50 mean",
        *scored,
        "update delay (s, median)",
        "updates",
        "uplink MB",
        "downlink MB",
        "kB per update (median)",
        "link kbit/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in strategies.items():
        row = [
            name,
            _fmt(r["map50_mean"]),
            *[_fmt(r["map50_by_segment"].get(s)) for s in scored],
            _fmt(r["update_delay_s_median"], pct=False),
            str(r["updates"]),
            f"{r['uplink_bytes'] / 1e6:.1f}",
            f"{r['downlink_bytes'] / 1e6:.1f}",
            _kilo(r.get("downlink_bytes_per_update_median")),
            _fmt(r.get("link_kbit_s"), pct=False),
        ]
        lines.append("| " + " | ".join(row) + " |")
    budgets = results["budgets"]
    lines.append("")
    lines.append(
        f"mAP50 in points against the teacher on the clean frame; {results['duration_s']:.0f} s of "
        f"{Path(results['video']).name} through {Path(results['drift']).name}, seed {results['seed']}, "
        f"student {results['student_sha256'][:8]}, GPU speed-up {results['gpu_speedup']:g}; "
        f"every strategy: {budgets['max_samples_per_s']:g} samples/s, "
        f"{budgets['max_bytes_per_s'] / 1000:.0f} kB/s up, {budgets['train_budget_gpu_s']:.0f} GPU-s of training."
    )
    return "\n".join(lines) + "\n"


def shade_segments(ax, segments: list[dict], duration_s: float, fontsize: int = 8) -> None:
    """Alternate shading behind each drift segment, its name above it."""
    start = 0.0
    for i, seg in enumerate(segments):
        end = min(seg["until_s"], duration_s)
        if end <= start:
            break
        ax.axvspan(start, end, color=SEGMENT_SHADES[i % 2], zorder=0)
        ax.text((start + end) / 2, 1.02, seg["name"], ha="center", va="bottom", fontsize=fontsize)
        start = end


def timeline_line(timeline: list[dict], fps: float) -> tuple[list[float], list[float]]:
    """x, y to draw a timeline as steps: each window's mAP50 held over the frames it scored, and a
    break where no frame was scored (the bootstrap's own frames, where a looping video shows them)."""
    xs: list[float] = []
    ys: list[float] = []
    for w in timeline:
        if xs and w["t_s"] > xs[-1] + 1.5 / fps:
            xs.append(xs[-1])
            ys.append(float("nan"))
        end = w["t_s"] + w["frames"] / fps
        xs += [w["t_s"], end]
        ys += [w["map50"], w["map50"]]
    return xs, ys


def plot(results: dict, path: Path) -> None:
    """Accuracy over time per strategy, drift segments shaded and named, model updates marked."""
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    shade_segments(ax, results["segments"], results["duration_s"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (name, r) in zip(colors, results["strategies"].items(), strict=False):
        xs, ys = timeline_line(r["timeline"], results["fps"])
        ax.plot(xs, ys, label=f"{name} ({_fmt(r['map50_mean'])})", color=color)
        for t in r["update_times_s"]:
            ax.axvline(t, color=color, alpha=0.35, linestyle=":", linewidth=1)
    ax.set_xlim(0, results["duration_s"])
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("mAP50 vs teacher on clean frame")
    ax.legend(loc="lower left", fontsize=8, ncols=4)
    ax.set_title("Accuracy under drift (dotted lines: model updates reaching the edge)", fontsize=10, pad=16)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    (out / "results.md").write_text(markdown_table(results))
    plot(results, out / "accuracy.png")
