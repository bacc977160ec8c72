"""The model registry: immutable versions per edge, written atomically, with a latest pointer.

Layout under root:
    base/v000001/{weights.safetensors, manifest.json}   bootstrap models every new edge starts from
    base/LATEST                                          the newest version's number
    edges/<edge_id>/v000002/...                          that edge's own lineage
    edges/<edge_id>/LATEST

A version is written to a temporary folder and renamed into place, then LATEST is replaced,
so a reader never sees half a model. Waiters learn of new versions from a condition variable
in this process and by polling LATEST across processes (several front ends on shared storage).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from edgesync.errors import IntegrityError, NotFound
from edgesync.types import ModelManifest, check_edge_id
from edgesync.weights import sha256_hex

log = logging.getLogger(__name__)

BASE = "base"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Versioned safetensors models with manifests, one lineage per edge plus a shared base."""

    def __init__(self, root: Path, poll_s: float = 1.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.poll_s = poll_s
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------ paths

    def _lineage(self, edge_id: str | None) -> Path:
        if edge_id is None:
            return self.root / BASE
        return self.root / "edges" / check_edge_id(edge_id)

    @staticmethod
    def _version_dir(lineage: Path, version: int) -> Path:
        return lineage / f"v{version:06d}"

    # ------------------------------------------------------------ reads

    def latest_version(self, edge_id: str | None) -> int:
        """Newest version in this edge's lineage (None: the base), 0 when there is none."""
        pointer = self._lineage(edge_id) / "LATEST"
        try:
            return int(pointer.read_text().strip())
        except (FileNotFoundError, ValueError):
            return 0

    def manifest(self, edge_id: str | None, version: int) -> ModelManifest:
        path = self._version_dir(self._lineage(edge_id), version) / MANIFEST
        try:
            return ModelManifest.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            who = edge_id or BASE
            raise NotFound(f"no model version {version} for {who}") from None

    def latest(self, edge_id: str | None) -> ModelManifest | None:
        version = self.latest_version(edge_id)
        return self.manifest(edge_id, version) if version else None

    def versions(self, edge_id: str | None) -> list[ModelManifest]:
        lineage = self._lineage(edge_id)
        if not lineage.exists():
            return []
        found = sorted(p for p in lineage.iterdir() if p.name.startswith("v") and (p / MANIFEST).exists())
        return [ModelManifest.from_json(json.loads((p / MANIFEST).read_text())) for p in found]

    def load(self, edge_id: str | None, version: int) -> tuple[ModelManifest, bytes]:
        """The manifest and weights of one version, verified against its sha256."""
        manifest = self.manifest(edge_id, version)
        data = (self._version_dir(self._lineage(edge_id), version) / WEIGHTS).read_bytes()
        if sha256_hex(data) != manifest.sha256:
            raise IntegrityError(f"registry copy of {edge_id or BASE} v{version} is corrupt (sha256 mismatch)")
        return manifest, data

    # ------------------------------------------------------------ writes

    def register(self, edge_id: str | None, data: bytes, manifest: ModelManifest) -> ModelManifest:
        """Store data as the next version of this lineage; returns the manifest as stored."""
        lineage = self._lineage(edge_id)
        lineage.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            version = self.latest_version(edge_id) + 1
            stored = ModelManifest.from_json(
                {
                    **manifest.to_json(),
                    "version": version,
                    "sha256": sha256_hex(data),
                    "size_bytes": len(data),
                }
            )
            staging = Path(tempfile.mkdtemp(dir=lineage, prefix=".staging-"))
            try:
                (staging / WEIGHTS).write_bytes(data)
                (staging / MANIFEST).write_text(json.dumps(stored.to_json(), indent=2))
                os.replace(staging, self._version_dir(lineage, version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            write_atomic(lineage / "LATEST", f"{version}\n".encode())
        log.info("registered %s v%d (%d bytes, parent v%d)", edge_id or BASE, version, len(data), stored.parent)
        with self._changed:
            self._changed.notify_all()
        return stored

    def ensure_edge(self, edge_id: str) -> int:
        """Give a new edge its first version, a copy of the newest base model; returns its latest version."""
        current = self.latest_version(edge_id)
        if current:
            return current
        base = self.latest(None)
        if base is None:
            return 0
        _, data = self.load(None, base.version)
        stored = self.register(edge_id, data, ModelManifest.from_json({**base.to_json(), "parent": 0}))
        return stored.version

    # ------------------------------------------------------------ waiting

    def wait_for_newer(self, edge_id: str, have_version: int, timeout_s: float) -> ModelManifest | None:
        """Block until this edge's lineage has a version above have_version, or timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            latest = self.latest_version(edge_id)
            if latest > have_version:
                return self.manifest(edge_id, latest)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._changed:
                self._changed.wait(min(remaining, self.poll_s))
