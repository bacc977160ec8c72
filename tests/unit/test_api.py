"""REST API: token, pagination and filters, edges with history, samples and thumbnails, jobs,
model lineage, operator actions, /metrics and the OpenAPI schema (FastAPI's TestClient over a real
store, registry and training manager)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_trainer.api import create_app
from cloud_trainer.manager import TrainingManager
from cloud_trainer.operations import FleetOperations
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import MemoryStore
from edgesync.config import ManagerConfig
from edgesync.types import Detection, EdgeEvent, EdgeInfo, ModelManifest, StoredSample, TrainingJob

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def manifest(parent: int, preprocess: str = "none", **metrics: float) -> ModelManifest:
    return ModelManifest(
        version=0, parent=parent, sha256="", size_bytes=0, arch="yolov8n", class_names=("person",), imgsz=320,
        metrics=dict(metrics), trained_until=time.time() - 20, preprocess=preprocess,
    )  # fmt: skip


@pytest.fixture
def fleet(tmp_path: Path):
    store = MemoryStore()
    registry = ModelRegistry(tmp_path / "registry")
    manager = TrainingManager(store, registry, ManagerConfig())
    now = time.time()
    for edge_id in ("cam-a", "cam-b"):
        store.upsert_edge(EdgeInfo(edge_id, ["person"], registered=now, last_heartbeat=now, model_version=1))
        registry.register(edge_id, b"weights-1" + edge_id.encode(), manifest(0))
    registry.register("cam-a", b"weights-2", manifest(1, "auto-levels", map50=0.6, parent_map50=0.4))
    store.update_edge("cam-b", last_heartbeat=now - 3600)  # offline
    image = np.full((48, 64, 3), 120, np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    for i in range(5):
        sample = StoredSample(f"s{i}", "cam-a", now + i, now + i, 1, 0.5, i, [Detection(5, 5, 30, 40, 0, 0.7)], 64, 48)
        store.add_sample(sample, jpeg)
    store.set_labels("cam-a", "s0", [Detection(6, 6, 31, 41, 0, 1.0)])
    store.add_event(EdgeEvent("cam-a", "accuracy", now, {"live_map50": 0.42, "batch_map50": 0.5, "samples": 8.0}))
    store.add_event(EdgeEvent("cam-a", "scene_change", now + 1, {"capture_time": now, "confidence": 0.9}))
    store.add_event(
        EdgeEvent("cam-a", "model_deployed", now + 2, {"version": 2.0, "origin": "trained", "delay_s": 12.5})
    )
    store.put_job(TrainingJob("job-1", "cam-a", 0.5, now, 1, reason="test", predicted_gain=0.6))
    ops = FleetOperations(store, registry, manager)
    app = create_app(store, registry, ops, token=TOKEN, heartbeat_s=5.0)
    with TestClient(app) as client:
        yield client, store, registry


def test_api_routes_need_the_token(fleet) -> None:
    client, *_ = fleet
    missing = client.get("/api/v1/edges")
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert client.get("/api/v1/edges", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").json()["ok"] is True  # open: load balancers probe it
    assert client.get("/").status_code == 200  # the page itself asks for the token


def test_edges_list_with_status_filter_and_pagination(fleet) -> None:
    client, *_ = fleet
    page = client.get("/api/v1/edges", headers=AUTH).json()
    assert page["total"] == 2
    a, b = page["items"]
    assert (a["edge_id"], a["status"], a["latest_version"], a["live_map50"]) == ("cam-a", "online", 2, None)
    assert a["scene_changes"] == 1 and a["jobs_queued"] == 1 and a["samples_labelled"] == 1
    assert b["status"] == "offline"
    only = client.get("/api/v1/edges?status=offline&limit=1", headers=AUTH).json()
    assert [e["edge_id"] for e in only["items"]] == ["cam-b"] and only["limit"] == 1
    assert client.get("/api/v1/edges?limit=0", headers=AUTH).status_code == 422


def test_edge_detail_carries_its_history(fleet) -> None:
    client, *_ = fleet
    detail = client.get("/api/v1/edges/cam-a", headers=AUTH).json()
    history = detail["history"]
    assert history["accuracy"][0]["data"]["live_map50"] == 0.42
    assert len(history["scene_changes"]) == 1
    assert history["deployments"] == [
        {"time": pytest.approx(history["deployments"][0]["time"]), "version": 2, "origin": "trained", "delay_s": 12.5}
    ]
    missing = client.get("/api/v1/edges/nope", headers=AUTH)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    bad_kind = client.get("/api/v1/edges/cam-a/events?kind=weather", headers=AUTH)
    assert bad_kind.status_code == 400 and "weather" in bad_kind.json()["error"]


def test_samples_newest_first_and_thumbnails_with_boxes(fleet) -> None:
    client, *_ = fleet
    page = client.get("/api/v1/edges/cam-a/samples?limit=2", headers=AUTH).json()
    assert page["total"] == 5 and [s["sample_id"] for s in page["items"]] == ["s4", "s3"]
    labelled = client.get("/api/v1/edges/cam-a/samples?labelled=true", headers=AUTH).json()
    assert [(s["sample_id"], s["teacher_boxes"]) for s in labelled["items"]] == [("s0", 1)]
    thumb = client.get(labelled["items"][0]["thumbnail"], headers=AUTH)
    assert thumb.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 320
    assert image[:, :, 1].max() > 180  # the teacher's green box was drawn on a grey frame
    assert client.get("/api/v1/edges/cam-a/samples/zzz/thumbnail.jpg", headers=AUTH).status_code == 404


def test_jobs_and_models_with_lineage(fleet) -> None:
    client, *_ = fleet
    jobs = client.get("/api/v1/jobs?status=queued", headers=AUTH).json()
    assert [(j["job_id"], j["predicted_gain"], j["achieved_gain"]) for j in jobs["items"]] == [("job-1", 0.6, None)]
    assert client.get("/api/v1/jobs?status=lost", headers=AUTH).status_code == 400
    assert client.get("/api/v1/jobs/job-1", headers=AUTH).json()["reason"] == "test"
    models = client.get("/api/v1/models?edge_id=cam-a", headers=AUTH).json()["items"]
    assert [(m["version"], m["parent"], m["origin"], m["preprocess"], m["running"]) for m in models] == [
        (2, 1, "trained", "auto-levels", False),
        (1, 0, "base", "none", True),
    ]


def test_operator_actions_go_through_the_registry_and_the_manager(fleet) -> None:
    client, store, registry = fleet
    rolled = client.post("/api/v1/edges/cam-a/rollback", headers=AUTH).json()
    assert rolled["version"] == 3
    assert registry.manifest("cam-a", 3).sha256 == registry.manifest("cam-a", 1).sha256
    pinned = client.post("/api/v1/edges/cam-a/pin", json={"version": 2}, headers=AUTH).json()
    assert pinned["version"] == 4 and registry.manifest("cam-a", 4).sha256 == registry.manifest("cam-a", 2).sha256
    assert client.get("/api/v1/edges/cam-a", headers=AUTH).json()["status"] == "pinned"
    refused = client.post("/api/v1/edges/cam-a/retrain", headers=AUTH)
    assert refused.status_code == 400 and "unpin" in refused.json()["error"]
    assert client.post("/api/v1/edges/cam-a/pin", json={"version": 99}, headers=AUTH).status_code == 404
    client.post("/api/v1/edges/cam-a/unpin", headers=AUTH)
    client.post("/api/v1/edges/cam-a/pause", headers=AUTH)
    assert client.get("/api/v1/edges/cam-a", headers=AUTH).json()["status"] == "paused"
    client.post("/api/v1/edges/cam-a/resume", headers=AUTH)
    queued = client.post("/api/v1/edges/cam-a/retrain", headers=AUTH).json()
    assert store.get_job(queued["job_id"]).priority >= 1e9  # ahead of every job the manager ranked
    client.post("/api/v1/edges/cam-a/revoke", headers=AUTH)
    assert client.get("/api/v1/edges/cam-a", headers=AUTH).json()["status"] == "revoked"
    assert store.get_meta("cam-a")["revoked"] == 1.0  # the gRPC service refuses the edge's next call
    client.post("/api/v1/edges/cam-a/reinstate", headers=AUTH)
    actions = [e.data["action"] for e in store.list_events("cam-a", "operator")]
    assert actions == ["rollback", "pin", "unpin", "pause", "resume", "retrain", "revoke", "reinstate"]
    first_model = client.post("/api/v1/edges/cam-b/rollback", headers=AUTH)
    assert first_model.status_code == 400 and "nothing to roll back" in first_model.json()["error"]


def test_metrics_follow_prometheus_conventions(fleet) -> None:
    client, *_ = fleet
    text = client.get("/metrics").text
    assert 'edgesync_edge_up{edge="cam-a"} 1.0' in text
    assert 'edgesync_edge_up{edge="cam-b"} 0.0' in text
    assert 'edgesync_edge_latest_model_version{edge="cam-a"} 2.0' in text
    assert "# TYPE edgesync_edge_uplink_bytes_total counter" in text
    assert 'edgesync_training_jobs{status="queued"} 1.0' in text
    assert "# TYPE edgesync_training_job_duration_seconds histogram" in text


def test_openapi_schema_lists_every_route(fleet) -> None:
    client, *_ = fleet
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/edges", "/api/v1/edges/{edge_id}", "/api/v1/jobs", "/api/v1/models", "/metrics"):
        assert path in paths
    assert "post" in paths["/api/v1/edges/{edge_id}/pin"]


def test_status_command_prints_the_fleet_from_a_served_api(fleet) -> None:
    import json

    from typer.testing import CliRunner

    from cloud_trainer.api import ApiServer
    from edgesync.cli import app

    client, *_ = fleet
    server = ApiServer(client.app, "127.0.0.1:0")
    port = server.start()
    try:
        runner = CliRunner()
        url = f"http://127.0.0.1:{port}"
        table = runner.invoke(app, ["status", "--url", url, "--token", TOKEN], terminal_width=200)
        assert table.exit_code == 0, table.output
        assert "cam-a" in table.output and "online" in table.output and "offline" in table.output
        as_json = runner.invoke(app, ["status", "--url", url, "--json"], env={"EDGESYNC_API_TOKEN": TOKEN})
        assert [e["edge_id"] for e in json.loads(as_json.output)["edges"]] == ["cam-a", "cam-b"]
        wrong = runner.invoke(app, ["status", "--url", url, "--token", "nope"])
        assert wrong.exit_code == 1 and "wrong token" in wrong.output
        down = runner.invoke(app, ["status", "--url", "http://127.0.0.1:9", "--token", TOKEN])
        assert down.exit_code == 1 and "cannot reach" in down.output
    finally:
        server.stop()
