"""Read-only views of the fleet for the REST API: assembled from the state store and the registry.

Nothing here is cached: every request reads the shared store, so any number of API front ends
(one per cloud process, all on one Redis) show the same fleet.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from cloud_trainer.api import schemas
from cloud_trainer.manager import pinned_version
from cloud_trainer.registry import ModelRegistry, model_origin
from cloud_trainer.state import StateStore
from edgesync.errors import InvalidInput
from edgesync.types import JOB_STATUSES, Detection, EdgeEvent, EdgeInfo, StoredSample, TrainingJob

TEACHER_BGR = (80, 200, 80)
STUDENT_BGR = (40, 150, 255)
THUMBNAIL_WIDTH = 320
HISTORY_LIMIT = 720  # events per series in an edge's detail: an hour of 5 s heartbeats


def event_out(event: EdgeEvent) -> schemas.Event:
    return schemas.Event(kind=event.kind, time=event.time, data=event.data)


def job_out(job: TrainingJob) -> schemas.JobOut:
    duration = job.finished - job.started if job.finished and job.started else None
    return schemas.JobOut(
        **{k: v for k, v in job.to_json().items() if k in schemas.JobOut.model_fields}, duration_s=duration
    )


class FleetView:
    """What the API shows about edges, samples, jobs and models."""

    def __init__(self, store: StateStore, registry: ModelRegistry, heartbeat_s: float, offline_after: float) -> None:
        self.store = store
        self.registry = registry
        self.offline_after_s = heartbeat_s * offline_after

    # ------------------------------------------------------------ edges

    def summary(self, info: EdgeInfo, now: float | None = None) -> schemas.EdgeSummary:
        now = time.time() if now is None else now
        meta = self.store.get_meta(info.edge_id)
        online = now - info.last_heartbeat <= self.offline_after_s
        pinned = pinned_version(meta)
        paused = bool(meta.get("paused"))
        status = "online" if online else "offline"
        if meta.get("revoked"):
            status = "revoked"
        elif pinned or paused:
            status = "pinned" if pinned else "paused"
        changes = self.store.list_events(info.edge_id, "scene_change", limit=HISTORY_LIMIT)
        running = self.store.list_jobs(edge_id=info.edge_id, status="running", limit=50)
        queued = self.store.list_jobs(edge_id=info.edge_id, status="queued", limit=50)
        return schemas.EdgeSummary(
            edge_id=info.edge_id,
            description=info.description,
            status=status,
            online=online,
            last_heartbeat=info.last_heartbeat,
            model_version=info.model_version,
            latest_version=self.registry.latest_version(info.edge_id),
            pinned_version=pinned,
            paused=paused,
            live_map50=meta.get("live_map50"),
            confidence_proxy=info.confidence_proxy,
            frames=info.frames,
            queue_depth=info.queue_depth,
            uplink_bytes=info.uplink_bytes,
            downlink_bytes=info.downlink_bytes,
            samples_received=info.samples_received,
            samples_rejected=info.samples_rejected,
            samples_labelled=self.store.count_samples(info.edge_id, labelled=True),
            scene_changes=len(changes),
            last_scene_change=changes[-1].time if changes else None,
            jobs_queued=len(queued),
            jobs_running=len(running),
        )

    def edges(self, status: str | None, offset: int, limit: int) -> schemas.Page[schemas.EdgeSummary]:
        now = time.time()
        found = [self.summary(info, now) for info in self.store.list_edges()]
        if status is not None:
            found = [e for e in found if e.status == status]
        return schemas.Page(items=found[offset : offset + limit], total=len(found), offset=offset, limit=limit)

    def detail(self, edge_id: str, since: float = 0.0) -> schemas.EdgeDetail:
        summary = self.summary(self.store.get_edge(edge_id))

        def series(kind: str) -> list[schemas.Event]:
            return [event_out(e) for e in self.store.list_events(edge_id, kind, since=since, limit=HISTORY_LIMIT)]

        deployments = [
            schemas.Deployment(
                time=e.time,
                version=int(e.data.get("version", 0)),
                origin=str(e.data.get("origin", "unknown")),
                delay_s=float(e.data["delay_s"]) if "delay_s" in e.data else None,
            )
            for e in self.store.list_events(edge_id, "model_deployed", since=since, limit=HISTORY_LIMIT)
        ]
        history = schemas.EdgeHistory(
            accuracy=series("accuracy"),
            heartbeats=series("heartbeat"),
            scene_changes=series("scene_change"),
            deployments=deployments,
            operator=series("operator"),
        )
        return schemas.EdgeDetail(**summary.model_dump(), history=history)

    def events(self, edge_id: str, kind: str, since: float, limit: int) -> list[schemas.Event]:
        self.store.get_edge(edge_id)
        return [event_out(e) for e in self.store.list_events(edge_id, kind, since=since, limit=limit)]

    def overview(self, store_type: str) -> schemas.Overview:
        now = time.time()
        edges = self.store.list_edges()
        jobs = {s: len(self.store.list_jobs(status=s, limit=10_000)) for s in JOB_STATUSES}
        return schemas.Overview(
            edges=len(edges),
            online=sum(now - e.last_heartbeat <= self.offline_after_s for e in edges),
            samples_received=sum(e.samples_received for e in edges),
            samples_labelled=sum(self.store.count_samples(e.edge_id, labelled=True) for e in edges),
            uplink_bytes=sum(e.uplink_bytes for e in edges),
            downlink_bytes=sum(e.downlink_bytes for e in edges),
            jobs=jobs,
            models=sum(self.registry.latest_version(e.edge_id) for e in edges),
            store=store_type,
            time=now,
        )

    # ------------------------------------------------------------ samples

    def samples(self, edge_id: str, labelled: bool | None, offset: int, limit: int) -> schemas.Page[schemas.SampleOut]:
        self.store.get_edge(edge_id)
        total = self.store.count_samples(edge_id, labelled=labelled)
        newest = self.store.list_samples(edge_id, labelled=labelled, newest_first=True, limit=offset + limit)
        items = [self._sample_out(s) for s in newest[offset:]]
        return schemas.Page(items=items, total=total, offset=offset, limit=limit)

    @staticmethod
    def _sample_out(s: StoredSample) -> schemas.SampleOut:
        return schemas.SampleOut(
            sample_id=s.sample_id,
            seq=s.seq,
            capture_time=s.capture_time,
            received_time=s.received_time,
            scene_start=s.scene_start,
            model_version=s.model_version,
            score=s.score,
            audit=s.audit,
            width=s.width,
            height=s.height,
            labelled=s.labels is not None,
            student_boxes=len(s.student),
            teacher_boxes=None if s.labels is None else len(s.labels),
            thumbnail=f"/api/v1/edges/{s.edge_id}/samples/{s.sample_id}/thumbnail.jpg",
        )

    def thumbnail(self, edge_id: str, sample_id: str) -> bytes:
        """The sample's frame, THUMBNAIL_WIDTH wide, with teacher and student boxes drawn."""
        sample = self.store.get_sample(edge_id, sample_id)  # NotFound names the sample if it is gone
        jpeg = self.store.get_jpeg(edge_id, sample_id)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise InvalidInput(f"sample {sample_id!r} of edge {edge_id!r} is not a decodable JPEG")
        scale = THUMBNAIL_WIDTH / image.shape[1]
        image = cv2.resize(image, (THUMBNAIL_WIDTH, max(1, round(image.shape[0] * scale))))
        _draw(image, sample.labels or [], TEACHER_BGR, scale)  # boxes are in the JPEG's pixels
        _draw(image, sample.student, STUDENT_BGR, scale)
        ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise InvalidInput(f"cannot encode a thumbnail of sample {sample_id!r}")
        return out.tobytes()

    # ------------------------------------------------------------ jobs and models

    def jobs(self, status: str | None, edge_id: str | None, offset: int, limit: int) -> schemas.Page[schemas.JobOut]:
        if status is not None and status not in JOB_STATUSES:
            raise InvalidInput(f"unknown job status {status!r}; known: {', '.join(JOB_STATUSES)}")
        found = self.store.list_jobs(status=status, edge_id=edge_id, limit=10_000)
        items = [job_out(j) for j in found[offset : offset + limit]]
        return schemas.Page(items=items, total=len(found), offset=offset, limit=limit)

    def models(self, edge_id: str | None, offset: int, limit: int) -> schemas.Page[schemas.ModelOut]:
        edges = [self.store.get_edge(edge_id)] if edge_id else self.store.list_edges()
        found: list[schemas.ModelOut] = []
        for info in edges:
            for manifest in reversed(self.registry.versions(info.edge_id)):  # newest first
                origin, copy_of = model_origin(manifest)
                found.append(
                    schemas.ModelOut(
                        edge_id=info.edge_id,
                        version=manifest.version,
                        parent=manifest.parent,
                        created=manifest.created,
                        origin=origin,
                        copy_of=copy_of,
                        size_bytes=manifest.size_bytes,
                        sha256=manifest.sha256,
                        map50=manifest.metrics.get("map50"),
                        parent_map50=manifest.metrics.get("parent_map50"),
                        trained_until=manifest.trained_until,
                        preprocess=manifest.preprocess,
                        running=manifest.version == info.model_version,
                    )
                )
        return schemas.Page(items=found[offset : offset + limit], total=len(found), offset=offset, limit=limit)


def _draw(image: np.ndarray, boxes: list[Detection], colour: tuple[int, int, int], scale: float) -> None:
    for d in boxes:
        p1 = (round(d.x1 * scale), round(d.y1 * scale))
        p2 = (round(d.x2 * scale), round(d.y2 * scale))
        cv2.rectangle(image, p1, p2, colour, 2)
