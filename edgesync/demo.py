"""`edgesync demo`: the whole loop on one machine, as two real processes talking gRPC.

It bootstraps a student if none is cached, starts `edgesync cloud serve` and `edgesync edge run`
on localhost, streams vtest.avi through a drift schedule, and scores the edge's per-frame
results (its JSONL sink) against the teacher run on the *clean* frame, window by window.
The edge and cloud only ever see the drifted frames.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgesync.assets import resolve_video
from edgesync.config import load_cloud_config, load_edge_config
from edgesync.drift import load_schedule
from edgesync.errors import EdgeSyncError
from edgesync.evaluation import map50
from edgesync.ground_truth import clean_ground_truth
from edgesync.teachers import build_teacher

log = logging.getLogger(__name__)
console = Console(stderr=True)


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    drift: Path = Path("configs/drift/demo.yaml")
    edge_config: Path = Path("configs/demo/edge.yaml")
    cloud_config: Path = Path("configs/demo/cloud.yaml")
    bootstrap_dir: Path = Path("runs/bootstrap")
    window_s: float = 15.0
    startup_timeout_s: float = 120.0
    api_port: int = 8080  # dashboard, REST API and cloud metrics (a free port if this one is taken)
    edge_metrics_port: int = 9101  # the edge's Prometheus metrics (likewise)


@dataclass
class Window:
    """Accuracy of what the edge deployed over one stretch of stream time."""

    t_s: float
    condition: str
    model_version: int
    preds: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)

    def summary(self, num_classes: int) -> dict:
        return {
            "t_s": round(self.t_s, 1),
            "condition": self.condition,
            "map50": round(map50(self.preds, self.truth, num_classes), 4),
            "model_version": self.model_version,
            "frames": len(self.preds),
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_or_free(preferred: int) -> int:
    """preferred if nothing listens on it on 127.0.0.1, else a free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return _free_port()
    return preferred


def _wait_healthy(address: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EdgeSyncError(f"the cloud exited with code {process.returncode} during start-up")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.5)
    raise EdgeSyncError(f"the cloud did not become healthy at {address} within {timeout_s:.0f} s")


def _stop(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgesync.cli", *args]


def ensure_bootstrap(settings: DemoSettings, env: dict) -> Path:
    """The cached base model's registry folder, training it first if there is none."""
    base = settings.bootstrap_dir / "registry" / "base"
    if not (base / "LATEST").exists():
        console.rule("bootstrapping the student (first run only)")
        env = {**env, "EDGESYNC_CLOUD__DATA_DIR": str(settings.bootstrap_dir)}
        cmd = _cli("bootstrap", "--video", "vtest.avi", "--config", str(settings.cloud_config))
        if subprocess.run(cmd, env=env).returncode != 0:
            raise EdgeSyncError("bootstrap failed; see the messages above")
    return base


def run_demo(settings: DemoSettings) -> dict:
    """Run the demo end to end; returns (and writes) the summary."""
    cloud_cfg = load_cloud_config(settings.cloud_config)
    edge_cfg = load_edge_config(settings.edge_config)
    schedule = load_schedule(settings.drift)
    video = resolve_video(edge_cfg.source.uri)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = ensure_bootstrap(settings, env)

    teacher = build_teacher(cloud_cfg.teacher)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("teacher on clean frames (ground truth, cached)", total=None)
        truth = clean_ground_truth(
            video,
            teacher,
            settings.bootstrap_dir / "cache",
            progress=lambda n, total: progress.update(task, completed=n, total=total),
        )
    num_classes = len(teacher.class_names)
    del teacher

    out = settings.out
    if out.exists():
        shutil.rmtree(out)
    (out / "cloud" / "registry").mkdir(parents=True)
    shutil.copytree(base, out / "cloud" / "registry" / "base")
    address = f"127.0.0.1:{_free_port()}"
    frames_path = out / "frames.jsonl"
    api = f"127.0.0.1:{_port_or_free(settings.api_port)}"
    token = secrets.token_urlsafe(18)
    cloud_env = {
        **env,
        "EDGESYNC_CLOUD__LISTEN": address,
        "EDGESYNC_CLOUD__DATA_DIR": str(out / "cloud"),
        "EDGESYNC_CLOUD__API__LISTEN": api,
        "EDGESYNC_CLOUD__API__TOKEN": token,
    }
    edge_metrics = f"127.0.0.1:{_port_or_free(settings.edge_metrics_port)}"
    edge_env = {
        **env,
        "EDGESYNC_EDGE__METRICS_LISTEN": edge_metrics,
        "EDGESYNC_EDGE__CLOUD__ADDRESS": address,
        "EDGESYNC_EDGE__SINK": str(frames_path),
        "EDGESYNC_EDGE__MODEL_DIR": str(out / "edge" / "models"),
        "EDGESYNC_EDGE__QUEUE__SPILL_DIR": str(out / "edge" / "spill"),
        "EDGESYNC_EDGE__SOURCE__DRIFT": str(settings.drift),
        "EDGESYNC_EDGE__SOURCE__URI": video,
    }
    console.rule(f"EdgeSync demo: {Path(video).name} through {settings.drift.name} ({schedule.duration_s:.0f} s)")
    with (out / "cloud.log").open("w") as cloud_log, (out / "edge.log").open("w") as edge_log:
        cloud = subprocess.Popen(
            _cli("cloud", "serve", "--config", str(settings.cloud_config)),
            env=cloud_env,
            stdout=cloud_log,
            stderr=subprocess.STDOUT,
        )
        edge = None
        try:
            _wait_healthy(address, cloud, settings.startup_timeout_s)
            console.print(f"cloud up at {address} (log: {out / 'cloud.log'})")
            console.print(f"dashboard: [bold]http://{api}/#token={token}[/bold]")
            console.print(f"metrics:   curl http://{api}/metrics (cloud), curl http://{edge_metrics}/metrics (edge)")
            edge = subprocess.Popen(
                _cli("edge", "run", "--config", str(settings.edge_config)),
                env=edge_env,
                stdout=edge_log,
                stderr=subprocess.STDOUT,
            )
            console.print(f"edge started (log: {out / 'edge.log'}, frames: {frames_path})")
            windows, updates, scene_changes = _follow(
                edge, frames_path, truth, schedule.duration_s, settings.window_s, num_classes
            )
        finally:
            if edge is not None:
                _stop(edge)
            _stop(cloud)
    if edge.returncode not in (0, -signal.SIGINT):
        raise EdgeSyncError(f"the edge exited with code {edge.returncode}; see {out / 'edge.log'}")
    summary = {
        "video": video,
        "drift": str(settings.drift),
        "duration_s": schedule.duration_s,
        "windows": windows,
        "updates": updates,
        "scene_changes_s": scene_changes,
        "segments": _by_condition(windows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary)
    console.print(f"summary written to {out / 'summary.json'}")
    return summary


class JsonlTail:
    """Reads the complete lines appended to a growing JSONL file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
            self.offset = fh.tell()
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


def _follow(
    edge: subprocess.Popen,
    frames_path: Path,
    truth: list[np.ndarray],
    duration_s: float,
    window_s: float,
    num_classes: int,
) -> tuple[list[dict], list[dict], list[float]]:
    """Tail the edge's JSONL while it runs: score windows, report updates and scene changes as they come."""
    windows: list[dict] = []
    updates: list[dict] = []
    scene_changes: list[float] = []  # stream times the edge's change-point detector fired
    current: Window | None = None
    tail = JsonlTail(frames_path)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("stream", total=duration_s, status="waiting for the edge")
        while True:
            running = edge.poll() is None
            for record in tail.read():
                if record["type"] == "model_swap":
                    update = {
                        "version": record["version"],
                        "t_s": record["t_s"],
                        "update_delay_s": record["update_delay_s"],
                        "bytes": record["bytes"],
                    }
                    updates.append(update)
                    progress.console.print(
                        f"[green]model v{update['version']} landed[/green] at t={update['t_s']:.0f} s: "
                        f"update delay {update['update_delay_s']:.1f} s, {update['bytes'] / 1e6:.1f} MB"
                    )
                    continue
                if record["type"] == "scene_change":
                    scene_changes.append(record["t_s"])
                    progress.console.print(
                        f"[yellow]scene change[/yellow] seen at t={record['t_s']:.0f} s "
                        f"(confidence {record['confidence']:.2f})"
                    )
                    continue
                if record["type"] != "frame":
                    continue
                t = record["t_s"]
                if current is None or t >= current.t_s + window_s:
                    if current is not None and current.preds:
                        windows.append(_report(progress, current.summary(num_classes)))
                    current = Window(window_s * int(t // window_s), record["condition"], record["model_version"])
                gt_index = record["video_frame"]
                if 0 <= gt_index < len(truth):
                    current.preds.append(np.asarray(record["detections"], dtype=np.float32).reshape(-1, 6))
                    current.truth.append(truth[gt_index])
                    current.model_version = record["model_version"]
                progress.update(
                    task,
                    completed=min(t, duration_s),
                    status=f"{record['condition']}, v{record['model_version']}",
                )
            if not running:
                break
            time.sleep(0.5)
        if current is not None and current.preds:
            windows.append(_report(progress, current.summary(num_classes)))
    return windows, updates, scene_changes


def _report(progress: Progress, window: dict) -> dict:
    progress.console.print(
        f"t={window['t_s']:>5.0f} s  {window['condition']:<10} model v{window['model_version']:<3} "
        f"mAP50 {window['map50']:.3f}  ({window['frames']} frames)"
    )
    return window


def _by_condition(windows: list[dict]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for w in windows:
        groups.setdefault(w["condition"], []).append(w["map50"])
    return {k: round(float(np.mean(v)), 4) for k, v in groups.items()}


def _print_summary(summary: dict) -> None:
    table = Table(title="Student accuracy (mAP50 vs the teacher on the clean frame)")
    for col in ("t (s)", "condition", "model", "mAP50", "frames"):
        table.add_column(col, justify="right")
    for w in summary["windows"]:
        table.add_row(
            f"{w['t_s']:.0f}", w["condition"], f"v{w['model_version']}", f"{w['map50']:.3f}", str(w["frames"])
        )
    console.print(table)
    updates = Table(title="Model updates")
    for col in ("version", "landed at t (s)", "update delay (s)", "bytes"):
        updates.add_column(col, justify="right")
    for u in summary["updates"]:
        updates.add_row(f"v{u['version']}", f"{u['t_s']:.0f}", f"{u['update_delay_s']:.1f}", f"{u['bytes']:,}")
    console.print(updates)
