"""Where the edge agent's frame step spends its time besides prediction: cProfile over one pass.

Runs `bench edge`'s agent pass (EdgeAgent.step over vtest.avi's first frames, no cloud) on the
bench's student seeing frames through auto levels, under cProfile, and prints per frame what
each part of the step took: prediction (auto levels included), the change-point statistics,
the sampler, the sink. cProfile slows Python more than C, so the shares, not the absolute
times, are what to read (BENCHMARKS.md, session 37). cProfile sees the loop's thread only: with
--read-ahead above 0 (the agent's default since session 38) the levels and the image statistics
are prepared on the source's reader thread and leave the step; the default 0 profiles them in it.

    PYTHONPATH=. .venv/bin/python scripts/step_profile.py --frames 300
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from edgesync.assets import vtest_path
from edgesync.config import SamplerConfig, SourceConfig, StudentConfig
from edgesync.drift import load_schedule
from edgesync_bench import edge_loop
from edgesync_bench.runner import default_bench_student

# (label, function as pstats names it: file suffix, line-independent function name)
PARTS = [
    ("step (all of it)", "edge_agent/agent.py", "step"),
    ("prediction", "edge_agent/hotswap.py", "predict"),
    ("  of which auto levels", "edgesync/preprocess.py", "auto_levels"),
    ("change-point statistics", "edgesync/changepoint.py", "watch"),
    ("sampler", "edgesync/sampling.py", "offer"),
    ("sink", "edge_agent/sink.py", "frame"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="first frames of vtest.avi to use")
    parser.add_argument(
        "--read-ahead", type=int, default=0, help="source.read_ahead: frames prepared ahead on a reader thread"
    )
    args = parser.parse_args()
    video = str(vtest_path())
    student, _, _ = default_bench_student(video, load_schedule("configs/drift/dev.yaml"))
    model = student.with_preprocess("auto-levels")
    model.warmup()
    edge_loop._bare_pass(video, model, edge_loop.WARMUP_FRAMES)  # decoder and predictor warm
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        profile.enable()
        run = edge_loop._agent_pass(
            video,
            model,
            args.frames,
            Path(tmp) / "agent",
            SamplerConfig(),
            StudentConfig(),
            SourceConfig(read_ahead=args.read_ahead),
        )
        profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, function) -> (calls, primitive, own, cumulative, callers)
    print(f"{run.frames} frames, {run.fps:.1f} fps under cProfile")
    step_ms = None
    for label, suffix, name in PARTS:
        cumulative = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == name)
        per_frame = cumulative * 1000 / run.frames
        step_ms = step_ms or per_frame
        print(f"{label:26s} {per_frame:6.2f} ms a frame  {per_frame / step_ms:6.1%} of the step")


if __name__ == "__main__":
    main()
