"""The REST API and dashboard of the cloud trainer (FastAPI; OpenAPI schema at /openapi.json).

    GET  /                                   the dashboard (static page, no build step)
    GET  /healthz                            liveness and store reachability (no token)
    GET  /metrics                            Prometheus text format (no token)
    GET  /api/v1/overview                    fleet totals
    GET  /api/v1/edges                       edges with status, model, accuracy, bytes, queue
    GET  /api/v1/edges/{edge}                one edge with its history (for the charts)
    GET  /api/v1/edges/{edge}/events         one kind of the edge's history
    GET  /api/v1/edges/{edge}/samples        uploaded samples, newest first
    GET  /api/v1/edges/{edge}/samples/{id}/thumbnail.jpg   teacher and student boxes drawn
    GET  /api/v1/jobs                        training jobs, newest first
    GET  /api/v1/jobs/{job}                  one job
    GET  /api/v1/models                      model versions with lineage and where they run
    POST /api/v1/edges/{edge}/pin            {"version": n}: run version n and stay on it
    POST /api/v1/edges/{edge}/unpin | rollback | pause | resume | retrain | revoke | reinstate

Everything under /api needs `Authorization: Bearer <token>` (ApiConfig.token). Errors are JSON
`{"error": "..."}` with the status code of the EdgeSyncError raised (404 unknown edge, ...).
"""

from __future__ import annotations

import logging
import secrets
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from cloud_trainer.api import schemas
from cloud_trainer.api.views import FleetView, job_out
from cloud_trainer.metrics import CloudMetrics
from cloud_trainer.operations import FleetOperations
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import StateStore
from edgesync import __version__
from edgesync.errors import EdgeSyncError
from edgesync.types import EVENT_KINDS

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
Offset = Annotated[int, Query(ge=0, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
BEARER = HTTPBearer(auto_error=False)  # module level: FastAPI resolves these annotations by name


def create_app(
    store: StateStore,
    registry: ModelRegistry,
    operations: FleetOperations,
    *,
    token: str,
    heartbeat_s: float,
    offline_after_heartbeats: float = 3.0,
    store_type: str = "memory",
) -> FastAPI:
    """The API over one store and registry; every /api route checks token."""
    if not token:
        raise ValueError("the API needs a token (ApiConfig.token, or let CloudTrainer generate one)")
    view = FleetView(store, registry, heartbeat_s, offline_after_heartbeats)
    metrics = CloudMetrics(store, registry, view.offline_after_s)

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if credentials is None:
            raise HTTPException(401, "missing token: send Authorization: Bearer <token>")
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "wrong token")

    app = FastAPI(
        title="EdgeSync cloud",
        version=__version__,
        description="Fleet, samples, training jobs and models of an EdgeSync cloud trainer.",
    )
    api = Depends(authorised)

    @app.exception_handler(EdgeSyncError)
    async def edgesync_error(request: Request, exc: EdgeSyncError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)

    # ------------------------------------------------------------ open routes

    static = resources.files("cloud_trainer.api") / "static"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (static / "index.html").read_text()

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        ok = store.ping()
        return JSONResponse({"ok": ok, "store": store_type}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------ reads

    @app.get(f"{PREFIX}/overview", dependencies=[api], tags=["fleet"])
    def overview() -> schemas.Overview:
        return view.overview(store_type)

    @app.get(f"{PREFIX}/edges", dependencies=[api], tags=["fleet"])
    def edges(
        offset: Offset = 0, limit: Limit = 100, status: schemas.EdgeStatus | None = None
    ) -> schemas.Page[schemas.EdgeSummary]:
        return view.edges(status, offset, limit)

    @app.get(f"{PREFIX}/edges/{{edge_id}}", dependencies=[api], tags=["fleet"])
    def edge(edge_id: str, since: Annotated[float, Query(ge=0)] = 0.0) -> schemas.EdgeDetail:
        return view.detail(edge_id, since)

    @app.get(f"{PREFIX}/edges/{{edge_id}}/events", dependencies=[api], tags=["fleet"])
    def events(
        edge_id: str,
        kind: Annotated[str, Query(description=f"one of {', '.join(EVENT_KINDS)}")],
        since: Annotated[float, Query(ge=0)] = 0.0,
        limit: Limit = 500,
    ) -> list[schemas.Event]:
        if kind not in EVENT_KINDS:
            raise HTTPException(400, f"unknown event kind {kind!r}; known: {', '.join(EVENT_KINDS)}")
        return view.events(edge_id, kind, since, limit)

    @app.get(f"{PREFIX}/edges/{{edge_id}}/samples", dependencies=[api], tags=["samples"])
    def samples(
        edge_id: str, offset: Offset = 0, limit: Limit = 24, labelled: bool | None = None
    ) -> schemas.Page[schemas.SampleOut]:
        return view.samples(edge_id, labelled, offset, limit)

    @app.get(
        f"{PREFIX}/edges/{{edge_id}}/samples/{{sample_id}}/thumbnail.jpg",
        dependencies=[api],
        tags=["samples"],
        response_class=Response,
    )
    def thumbnail(edge_id: str, sample_id: str) -> Response:
        return Response(view.thumbnail(edge_id, sample_id), media_type="image/jpeg")

    @app.get(f"{PREFIX}/jobs", dependencies=[api], tags=["training"])
    def jobs(
        offset: Offset = 0, limit: Limit = 50, status: str | None = None, edge_id: str | None = None
    ) -> schemas.Page[schemas.JobOut]:
        return view.jobs(status, edge_id, offset, limit)

    @app.get(f"{PREFIX}/jobs/{{job_id}}", dependencies=[api], tags=["training"])
    def job(job_id: str) -> schemas.JobOut:
        return job_out(store.get_job(job_id))

    @app.get(f"{PREFIX}/models", dependencies=[api], tags=["models"])
    def models(offset: Offset = 0, limit: Limit = 100, edge_id: str | None = None) -> schemas.Page[schemas.ModelOut]:
        return view.models(edge_id, offset, limit)

    # ------------------------------------------------------------ actions

    @app.post(f"{PREFIX}/edges/{{edge_id}}/pin", dependencies=[api], tags=["actions"])
    def pin(edge_id: str, body: schemas.PinRequest) -> schemas.ActionResult:
        sent = operations.pin(edge_id, body.version, actor="api")
        detail = f"pinned to v{body.version}; training paused until unpinned"
        return schemas.ActionResult(edge_id=edge_id, action="pin", detail=detail, version=sent.version)

    @app.post(f"{PREFIX}/edges/{{edge_id}}/unpin", dependencies=[api], tags=["actions"])
    def unpin(edge_id: str) -> schemas.ActionResult:
        operations.unpin(edge_id, actor="api")
        return schemas.ActionResult(edge_id=edge_id, action="unpin", detail="training and the zoo may update it again")

    @app.post(f"{PREFIX}/edges/{{edge_id}}/rollback", dependencies=[api], tags=["actions"])
    def rollback(edge_id: str) -> schemas.ActionResult:
        sent = operations.rollback(edge_id, actor="api")
        detail = f"v{sent.version} carries the weights of v{sent.metrics.get('reissue_of', sent.version):.0f}"
        return schemas.ActionResult(edge_id=edge_id, action="rollback", detail=detail, version=sent.version)

    @app.post(f"{PREFIX}/edges/{{edge_id}}/pause", dependencies=[api], tags=["actions"])
    def pause(edge_id: str) -> schemas.ActionResult:
        operations.pause(edge_id, actor="api")
        return schemas.ActionResult(edge_id=edge_id, action="pause", detail="no new training jobs until resumed")

    @app.post(f"{PREFIX}/edges/{{edge_id}}/resume", dependencies=[api], tags=["actions"])
    def resume(edge_id: str) -> schemas.ActionResult:
        operations.resume(edge_id, actor="api")
        return schemas.ActionResult(edge_id=edge_id, action="resume", detail="training jobs are queued again")

    @app.post(f"{PREFIX}/edges/{{edge_id}}/revoke", dependencies=[api], tags=["actions"])
    def revoke(edge_id: str) -> schemas.ActionResult:
        operations.revoke(edge_id, actor="api")
        return schemas.ActionResult(edge_id=edge_id, action="revoke", detail="every call of the edge is refused")

    @app.post(f"{PREFIX}/edges/{{edge_id}}/reinstate", dependencies=[api], tags=["actions"])
    def reinstate(edge_id: str) -> schemas.ActionResult:
        operations.reinstate(edge_id, actor="api")
        return schemas.ActionResult(edge_id=edge_id, action="reinstate", detail="the edge may call again")

    @app.post(f"{PREFIX}/edges/{{edge_id}}/retrain", dependencies=[api], tags=["actions"])
    def retrain(edge_id: str) -> schemas.ActionResult:
        queued = operations.retrain(edge_id, actor="api")
        return schemas.ActionResult(
            edge_id=edge_id, action="retrain", detail="queued ahead of all other jobs", job_id=queued.job_id
        )

    return app
