"""The model registry: immutable versions per edge, written atomically, with a latest pointer.

Layout under root:
    base/v000001/{weights.safetensors, manifest.json}   bootstrap models every new edge starts from
    base/LATEST                                          the newest version's number
    edges/<edge_id>/v000002/...                          that edge's own lineage
    edges/<edge_id>/LATEST
    .../v000002/payloads/<encoding>-<compression>-from-v000001.{bin,json}   cached deltas

A version is written to a temporary folder and renamed into place, then LATEST is replaced,
so a reader never sees half a model. Waiters learn of new versions from a condition variable
in this process and by polling LATEST across processes (several front ends on shared storage).

Deliveries (what goes down the wire to one edge) are a delta against a version the edge holds
when the deployment's downlink config asks for one and it is smaller, else the full weights
(edgesync.delta). Deltas are cached beside the version. A lossy delta is only exact against the
base it was validated with, so the worker hands that one in at registration; against any other
base the registry builds an exact fp16 delta on demand.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from edgesync.config import CloudConfig, DownlinkConfig
from edgesync.delta import apply_payload, compression_for, encode_delta, encode_full, is_lossless
from edgesync.errors import IntegrityError, NotFound
from edgesync.signing import ManifestSigner
from edgesync.types import ModelManifest, PayloadInfo, check_edge_id
from edgesync.weights import sha256_hex

log = logging.getLogger(__name__)

BASE = "base"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
PAYLOADS = "payloads"
MAX_BASES_TRIED = 2  # building a delta costs a fraction of a second; a held base beyond these is rarely better


def payload_name(encoding: str, sparse_fraction: float | None, compression: str, base_version: int) -> str:
    """File stem of a cached delta, e.g. int8-delta@0.1-zstd-from-v000003."""
    fraction = f"@{sparse_fraction:g}" if sparse_fraction else ""
    return f"{encoding}{fraction}-{compression or 'raw'}-from-v{base_version:06d}"


def model_origin(manifest: ModelManifest) -> tuple[str, int]:
    """(where a version came from, the version whose weights it copies or 0): base (an edge's first
    model), trained (by a job), zoo (a stored specialist sent again) or operator (rollback, pin)."""
    if manifest.metrics.get("zoo_of"):
        return "zoo", int(manifest.metrics["zoo_of"])
    if manifest.metrics.get("reissue_of"):
        return "operator", int(manifest.metrics["reissue_of"])
    return ("base" if manifest.parent == 0 else "trained"), 0


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

    def __init__(
        self,
        root: Path,
        poll_s: float = 1.0,
        downlink: DownlinkConfig | None = None,
        signer: ManifestSigner | None = None,
    ) -> None:
        self.root = Path(root)
        self.downlink = downlink or DownlinkConfig()
        self.signer = signer  # None: manifests are registered unsigned
        self.root.mkdir(parents=True, exist_ok=True)
        self.poll_s = poll_s
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------ paths

    @classmethod
    def for_cloud(cls, cfg: CloudConfig) -> ModelRegistry:
        """The registry a cloud process uses: under data_dir, its downlink, signing when configured."""
        key = cfg.security.signing_key
        return cls(Path(cfg.data_dir) / "registry", downlink=cfg.downlink, signer=ManifestSigner(key) if key else None)

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

    def register(
        self,
        edge_id: str | None,
        data: bytes,
        manifest: ModelManifest,
        payloads: Iterable[tuple[PayloadInfo, bytes]] = (),
    ) -> ModelManifest:
        """Store data as the next version of this lineage; returns the manifest as stored.

        payloads are deltas known to rebuild data exactly (the worker's validated ones), cached
        with the version for delivery.
        """
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
                    "signature": "",
                }
            )
            if self.signer is not None:
                stored = self.signer.sign(stored)
            staging = Path(tempfile.mkdtemp(dir=lineage, prefix=".staging-"))
            try:
                (staging / WEIGHTS).write_bytes(data)
                (staging / MANIFEST).write_text(json.dumps(stored.to_json(), indent=2))
                for info, payload in payloads:
                    self._write_payload(staging, info, payload)
                os.replace(staging, self._version_dir(lineage, version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            write_atomic(lineage / "LATEST", f"{version}\n".encode())
        log.info("registered %s v%d (%d bytes, parent v%d)", edge_id or BASE, version, len(data), stored.parent)
        with self._changed:
            self._changed.notify_all()
        return stored

    def reissue(self, edge_id: str, version: int, preprocess: str | None = None, **metrics: float) -> ModelManifest:
        """Register version's weights again as the edge's newest version, so the edge receives it.

        The zoo sends a stored specialist this way, an operator rolls back or pins; metrics are
        added to the copy's (e.g. zoo_of, reissue_of). The copy's parent is the version it
        replaces, and its weights are identical, so a delta against the edge's copy is tiny.
        preprocess: how the copy sees frames (edgesync.preprocess); None, as the version does.
        """
        manifest, data = self.load(edge_id, version)
        copy = ModelManifest.from_json(
            {
                **manifest.to_json(),
                "parent": self.latest_version(edge_id),
                "created": time.time(),
                "metrics": {**manifest.metrics, **metrics},
                "preprocess": preprocess or manifest.preprocess,
            }
        )
        return self.register(edge_id, data, copy)

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

    # ------------------------------------------------------------ delivery

    def delivery(self, edge_id: str, version: int, held: dict[int, str]) -> tuple[ModelManifest, bytes]:
        """What to send an edge holding held (version -> sha256) for version: (manifest with payload, bytes).

        A delta against a held version whose sha256 matches this lineage's, when the downlink
        config asks for deltas and the delta is smaller than the full weights; else full weights.
        """
        manifest, weights = self.load(edge_id, version)
        spec = self.downlink
        info, payload = encode_full(weights, compression_for(spec))
        if spec.encoding != "full":
            for base_version in self._usable_bases(edge_id, manifest, held):
                found = self._delta(edge_id, manifest, weights, base_version)
                if found is None:
                    continue
                if found[0].size_bytes < info.size_bytes:
                    info, payload = found
                break
        return replace(manifest, payload=info), payload

    def _usable_bases(self, edge_id: str, manifest: ModelManifest, held: dict[int, str]) -> list[int]:
        """Held versions with the registry's weights: the parent first (its delta was validated), then newest."""
        usable = []
        for base_version in sorted(held, key=lambda v: (v != manifest.parent, -v)):
            if base_version == manifest.version:
                continue
            try:
                if self.manifest(edge_id, base_version).sha256 == held[base_version]:
                    usable.append(base_version)
            except NotFound:
                continue
        return usable[:MAX_BASES_TRIED]

    def _delta(
        self, edge_id: str, manifest: ModelManifest, weights: bytes, base_version: int
    ) -> tuple[PayloadInfo, bytes] | None:
        """A cached or freshly built delta for version from base_version that rebuilds weights exactly."""
        spec = self.downlink
        compression = compression_for(spec)
        folder = self._version_dir(self._lineage(edge_id), manifest.version)
        names = [
            payload_name(spec.encoding, spec.sparse_fraction, compression, base_version),
            payload_name("fp16-delta", None, compression, base_version),
        ]
        for name in dict.fromkeys(names):
            cached = self._read_payload(folder, name)
            if cached is not None:
                return cached
        # a lossy delta is exact only against the base it was validated with; elsewhere send an exact one
        encoding, fraction = (
            (spec.encoding, spec.sparse_fraction)
            if is_lossless(spec.encoding, spec.sparse_fraction)
            else ("fp16-delta", None)
        )
        _, base_weights = self.load(edge_id, base_version)
        encoded = encode_delta(weights, base_weights, base_version, encoding, fraction, compression)
        if encoded is None:
            return None
        if apply_payload(encoded[0], encoded[1], base_weights, "delta check") != weights:
            log.warning(
                "%s v%d from v%d: %s does not rebuild exactly; not used",
                edge_id,
                manifest.version,
                base_version,
                encoding,
            )
            return None
        self._write_payload(folder, *encoded)
        return encoded

    @staticmethod
    def _write_payload(folder: Path, info: PayloadInfo, payload: bytes) -> None:
        name = payload_name(info.encoding, info.sparse_fraction, info.compression, info.base_version)
        (folder / PAYLOADS).mkdir(exist_ok=True)
        write_atomic(folder / PAYLOADS / f"{name}.bin", payload)
        write_atomic(folder / PAYLOADS / f"{name}.json", json.dumps(info.to_json()).encode())

    @staticmethod
    def _read_payload(folder: Path, name: str) -> tuple[PayloadInfo, bytes] | None:
        try:
            info = PayloadInfo(**json.loads((folder / PAYLOADS / f"{name}.json").read_text()))
            payload = (folder / PAYLOADS / f"{name}.bin").read_bytes()
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return (info, payload) if len(payload) == info.size_bytes else None

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
