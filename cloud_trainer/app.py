"""The cloud trainer process: gRPC front end, teacher labelling, training manager, workers."""

from __future__ import annotations

import logging
import secrets
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cloud_trainer.api import ApiServer, create_app
from cloud_trainer.ingest import Ingest
from cloud_trainer.interceptor import ErrorMappingInterceptor
from cloud_trainer.labeller import Labeller
from cloud_trainer.manager import TrainingManager
from cloud_trainer.operations import FleetOperations
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.scenes import SceneChangeHandler
from cloud_trainer.service import EdgeSyncService
from cloud_trainer.state import StateStore, build_store
from cloud_trainer.worker import TrainingWorker, default_worker_id
from cloud_trainer.zoo import ModelZoo
from edgesync.config import CloudConfig
from edgesync.teachers import Teacher, build_teacher
from edgesync.tls import read_pem
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "edgesync.v1.EdgeSync"


class CloudTrainer:
    """Wires store, registry, teacher, manager, labeller, workers and the gRPC server together."""

    def __init__(self, cfg: CloudConfig, teacher: Teacher | None = None, store: StateStore | None = None) -> None:
        self.cfg = cfg
        self.store = store or build_store(cfg.store)
        self.registry = ModelRegistry.for_cloud(cfg)
        self.teacher = teacher or build_teacher(cfg.teacher)
        self.manager = TrainingManager(self.store, self.registry, cfg.manager)
        self.labeller = Labeller(
            self.store, self.teacher, self.manager, cfg.labelling.batch_size, cfg.labelling.max_wait_s
        )
        self.workers = [  # 0 with Redis: a stateless front end; `edgesync cloud worker` processes train
            TrainingWorker.from_config(
                cfg, self.store, self.registry, f"{default_worker_id()}-{i}", teacher=self.teacher
            )
            for i in range(cfg.workers)
        ]
        self.ingest = Ingest(self.store, cfg.limits)
        zoo = ModelZoo(self.registry, view=cfg.training.preprocess[0]) if cfg.manager.zoo else None
        self.scenes = SceneChangeHandler(self.store, self.manager, zoo)
        self.service = EdgeSyncService(
            self.store,
            self.registry,
            self.ingest,
            cfg.heartbeat_s,
            scenes=self.scenes,
            edge_secret=cfg.security.edge_secret,
        )
        if not cfg.security.edge_secret:
            log.warning("security.edge_secret is not set: any caller may act as any edge (fine for a lab only)")
        self.operations = FleetOperations(self.store, self.registry, self.manager)
        self.api_token = cfg.api.token or secrets.token_urlsafe(18)
        self.api: ApiServer | None = None
        self.api_port = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self.port = 0

    def start(self) -> int:
        """Start serving; returns the bound port (useful with a :0 listen address)."""
        limit = self.cfg.limits.max_message_bytes
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
            interceptors=[ErrorMappingInterceptor()],
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        pb_grpc.add_EdgeSyncServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        security = self.cfg.security
        if security.tls_cert is not None and security.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(read_pem(security.tls_key, "TLS key"), read_pem(security.tls_cert, "TLS certificate"))]
            )
            self.port = self._server.add_secure_port(self.cfg.listen, credentials)
        else:
            self.port = self._server.add_insecure_port(self.cfg.listen)
        if not self.port:
            raise OSError(f"cannot listen on {self.cfg.listen}")
        if self.cfg.api.enabled:
            self._start_api()
        self._spawn("labeller", self.labeller.run)
        for worker in self.workers:
            self._spawn(worker.worker_id, worker.run)
        self._server.start()
        for name in ("", SERVICE_NAME):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("cloud trainer serving on port %d (%d workers)", self.port, len(self.workers))
        return self.port

    def _start_api(self) -> None:
        app = create_app(
            self.store,
            self.registry,
            self.operations,
            token=self.api_token,
            heartbeat_s=self.cfg.heartbeat_s,
            offline_after_heartbeats=self.cfg.api.offline_after_heartbeats,
            store_type=self.cfg.store.type,
        )
        security = self.cfg.security
        tls = (security.tls_cert, security.tls_key) if security.tls_cert and security.tls_key else None
        self.api = ApiServer(app, self.cfg.api.listen, tls=tls)
        self.api_port = self.api.start()
        generated = "" if self.cfg.api.token else " (token generated at start-up; set api.token to fix it)"
        log.info("dashboard: %s%s", self.dashboard_url(), generated)

    def dashboard_url(self, host: str | None = None) -> str:
        """The dashboard's address with the token in the fragment (never sent to a server or a log line of it)."""
        host = host or self.cfg.api.listen.rpartition(":")[0].strip("[]")
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if self.cfg.security.tls_cert else "http"
        return f"{scheme}://{host}:{self.api_port}/#token={self.api_token}"

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop serving and let background threads finish their current step."""
        self._health.enter_graceful_shutdown()
        self._stop.set()
        if self.api is not None:
            self.api.stop()
        if self._server is not None:
            self._server.stop(grace_s).wait()
        for thread in self._threads:
            thread.join(timeout=grace_s)
        self.store.close()

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()
