"""Did each model a bench strategy deployed help the stream, by how many frames judged it?

For every update in the given `edgesync bench` results (strategies whose name starts with
--prefix), the strategy's lead over `static` in the --windows timeline windows after the model
landed, minus its lead in the windows before, within the segment it landed in. Updates are
grouped by the number of held-out frames that accepted them, so how far a small jury's verdict
can be trusted is visible.

    .venv/bin/python scripts/update_effects.py docs/bench/*dev-s19-results.json docs/bench/*dev-s20-results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def effects(results: dict, prefix: str, windows: int) -> list[tuple[str, str, int, float]]:
    """(strategy, job id, held-out frames, change in lead over static) per deployed update."""
    static = {w["t_s"]: w["map50"] for w in results["strategies"]["static"]["timeline"]}
    out = []
    for name, strategy in results["strategies"].items():
        if not name.startswith(prefix):
            continue
        timeline = strategy["timeline"]
        for job in strategy["jobs"]:
            running = [w for w in timeline if job["version"] and w["model_version"] == job["version"]]
            if not running:
                continue  # rejected, or superseded before a window began
            segment, landed = running[0]["segment"], running[0]["t_s"]
            after = [w for w in running if w["segment"] == segment][:windows]
            before = [w for w in timeline if w["t_s"] < landed and w["segment"] == segment][-windows:]
            if not before:
                continue  # landed as its segment began: nothing to compare with

            def lead(ws: list[dict]) -> float:
                return sum(w["map50"] - static[w["t_s"]] for w in ws) / len(ws)

            out.append((name, job["job_id"], int(job["heldout_samples"]), lead(after) - lead(before)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files of `edgesync bench`")
    parser.add_argument("--prefix", default="edgesync", help="strategies whose name starts with this")
    parser.add_argument("--windows", type=int, default=3, help="timeline windows before and after each update")
    parser.add_argument("--small", type=int, default=5, help="a jury of at most this many held-out frames is small")
    args = parser.parse_args()
    rows = []
    for path in args.results:
        for name, job, heldout, change in effects(json.loads(path.read_text()), args.prefix, args.windows):
            rows.append((heldout, change))
            print(f"{path.name:<40} {name:<20} {job:<22} held out {heldout:>2}  {100 * change:+6.1f} points")
    for label, group in (
        (f"{args.small} held-out frames or fewer", [c for h, c in rows if h <= args.small]),
        (f"more than {args.small}", [c for h, c in rows if h > args.small]),
    ):
        if group:
            mean, harmful = 100 * sum(group) / len(group), sum(c < 0 for c in group)
            print(f"{label}: {len(group)} updates, {mean:+.1f} points on average, {harmful} harmful")


if __name__ == "__main__":
    main()
