"""Serve the REST API from a background thread of the cloud process (uvicorn, one event loop)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from edgesync.config import split_host_port

log = logging.getLogger(__name__)


class ApiServer:
    """uvicorn on a socket bound before start() returns, so the port is known (listen port 0 works)."""

    def __init__(self, app: FastAPI, listen: str, tls: tuple[Path, Path] | None = None) -> None:
        self.app = app
        self.tls = tls  # (certificate chain, key) PEM files: serve HTTPS
        self.host, self._port = split_host_port(listen)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Bind, start serving and return the port; OSError naming the address if it is taken."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise OSError(f"REST API cannot listen on {self.host}:{self._port}: {exc.strerror}") from exc
        self.port = sock.getsockname()[1]
        ssl = {"ssl_certfile": str(self.tls[0]), "ssl_keyfile": str(self.tls[1])} if self.tls else {}
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False, **ssl)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="rest-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"REST API did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self.port

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
