"""Per-frame results as JSON lines: detections, model version, latency; plus model-swap events."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from edge_agent.hotswap import SwapEvent
from edge_agent.source import Frame
from edge_agent.swap_guard import Collapse
from edgesync.changepoint import ChangePoint
from edgesync.types import Detection


class JsonlSink:
    """Appends one JSON object per line; flushed per line so a crash loses at most the last one."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._fh = None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", buffering=1)

    def _write(self, record: dict) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    def frame(self, frame: Frame, model_version: int, latency_ms: float, detections: list[Detection]) -> None:
        self._write(
            {
                "type": "frame",
                "frame": frame.index,
                "video_frame": frame.video_index,
                "t_s": round(frame.t_s, 3),
                "capture_time": round(frame.capture_time, 3),
                "condition": frame.condition,
                "model_version": model_version,
                "latency_ms": round(latency_ms, 2),
                "detections": [
                    [round(v, 1) for v in d.as_list()[:4]] + [d.class_id, round(d.score, 3)] for d in detections
                ],
            }
        )

    def scene_change(self, point: ChangePoint, model_version: int) -> None:
        self._write(
            {
                "type": "scene_change",
                "t_s": round(point.t_s, 3),
                "confidence": round(point.confidence, 3),
                "model_version": model_version,
            }
        )

    def swap(self, event: SwapEvent, t_s: float, frame_index: int) -> None:
        self._write(
            {
                "type": "model_swap",
                "frame": frame_index,
                "t_s": round(t_s, 3),
                "version": event.version,
                "previous_version": event.previous_version,
                "swapped_at": round(event.swapped_at, 3),
                "update_delay_s": round(event.update_delay_s, 3),
                "bytes": event.bytes,
            }
        )

    def rollback(self, collapse: Collapse, now_version: int, t_s: float, frame_index: int) -> None:
        self._write(
            {
                "type": "model_rollback",
                "frame": frame_index,
                "t_s": round(t_s, 3),
                "version": collapse.version,
                "now_version": now_version,
                "confidence_before": round(collapse.before, 4),
                "confidence_after": round(collapse.after, 4),
            }
        )

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
