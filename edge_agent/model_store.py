"""Models the edge holds on disk: the ones it received, so a restart keeps the current model."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from edgesync.errors import EdgeSyncError
from edgesync.signing import ManifestVerifier
from edgesync.student import StudentModel, load_safetensors_model
from edgesync.types import ModelManifest

log = logging.getLogger(__name__)


class EdgeModelStore:
    """<dir>/v000003.safetensors + v000003.json, written atomically; the newest valid one is loaded at start.

    The last `keep` versions stay, as bases the cloud can send deltas against.
    """

    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def save(self, manifest: ModelManifest, data: bytes) -> Path:
        stem = f"v{manifest.version:06d}"
        for suffix, payload in ((".safetensors", data), (".json", json.dumps(manifest.to_json()).encode())):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, self.root / f"{stem}{suffix}")
        for old in sorted(self.root.glob("v*.json"))[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
        return self.root / f"{stem}.safetensors"

    def held(self) -> dict[int, str]:
        """Stored versions -> the sha256 of their weights (what the cloud may send deltas against)."""
        out = {}
        for manifest_path in self.root.glob("v*.json"):
            try:
                manifest = ModelManifest.from_json(json.loads(manifest_path.read_text()))
            except (EdgeSyncError, OSError, ValueError):
                continue
            if manifest_path.with_suffix(".safetensors").exists():
                out[manifest.version] = manifest.sha256
        return out

    def weights(self, version: int) -> bytes | None:
        """The stored weights of version (unverified: a delta's base check verifies them), or None."""
        try:
            return (self.root / f"v{version:06d}.safetensors").read_bytes()
        except FileNotFoundError:
            return None

    def load_newest(self, verifier: ManifestVerifier | None = None, **kw) -> StudentModel | None:
        """The newest stored model that verifies (sha256, and the signature when verifier is given);
        corrupt or unsigned ones are skipped with a warning."""
        for manifest_path in sorted(self.root.glob("v*.json"), reverse=True):
            try:
                if verifier is not None:
                    manifest = ModelManifest.from_json(json.loads(manifest_path.read_text()))
                    verifier.verify(manifest, f"stored model {manifest_path.name}")
                model = load_safetensors_model(manifest_path.with_suffix(".safetensors"), **kw)
            except (EdgeSyncError, OSError, ValueError) as exc:
                log.warning("skipping stored model %s: %s", manifest_path.name, exc)
                continue
            return model
        return None
