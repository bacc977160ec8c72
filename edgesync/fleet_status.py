"""`edgesync status`: the fleet from a cloud's REST API, as a table (standard library HTTP, no cloud imports)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.table import Table


class StatusError(Exception):
    """The API could not be asked or refused; the message says which and why."""


def fetch_fleet(url: str, token: str, timeout_s: float = 10.0, ca: Path | None = None) -> dict:
    """{"overview": ..., "edges": [...]} from the API at url (https checked against ca, else the system's CAs)."""
    base = url.rstrip("/")
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None

    def get(path: str) -> dict:
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                reason = json.load(exc).get("error", exc.reason)
            except ValueError:
                reason = exc.reason
            raise StatusError(f"{base}{path}: HTTP {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StatusError(f"cannot reach the EdgeSync API at {base}: {reason}") from None

    return {"overview": get("/api/v1/overview"), "edges": get("/api/v1/edges?limit=500")["items"]}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fleet_table(fleet: dict, now: float | None = None) -> Table:
    """One row per edge: status, model, accuracy, traffic, change points, jobs."""
    now = time.time() if now is None else now
    o = fleet["overview"]
    jobs = o["jobs"]
    caption = (
        f"{o['online']}/{o['edges']} edges online · {o['samples_labelled']}/{o['samples_received']} samples labelled"
        f" · jobs {jobs['queued']} queued, {jobs['running']} running, {jobs['done']} done, {jobs['failed']} failed"
        f" · store {o['store']}"
    )
    table = Table(title="EdgeSync fleet", caption=caption)
    for name in ("edge", "status", "model", "live mAP50", "confidence", "frames", "queue", "uplink",
                 "downlink", "scene changes", "jobs", "heartbeat"):  # fmt: skip
        key = name in ("edge", "status")
        table.add_column(name, justify="left" if key else "right", no_wrap=key)
    colours = {"online": "green", "offline": "red", "revoked": "red", "paused": "yellow", "pinned": "yellow"}
    for e in fleet["edges"]:
        model = f"v{e['model_version']}" + (
            f" (v{e['latest_version']} sent)" if e["latest_version"] > e["model_version"] else ""
        )
        table.add_row(
            e["edge_id"],
            f"[{colours.get(e['status'], 'white')}]{e['status']}[/]",
            model,
            _pct(e["live_map50"]),
            _pct(e["confidence_proxy"]),
            str(e["frames"]),
            str(e["queue_depth"]),
            _bytes(e["uplink_bytes"]),
            _bytes(e["downlink_bytes"]),
            str(e["scene_changes"]),
            f"{e['jobs_queued']} q / {e['jobs_running']} r",
            f"{max(0.0, now - e['last_heartbeat']):.0f} s ago",
        )
    return table
