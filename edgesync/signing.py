"""Signed model manifests: the cloud signs, the edge refuses a model whose manifest does not verify.

The cloud holds an Ed25519 private key and signs every manifest it registers; edges hold only the
public key, so an edge that is taken over cannot forge models for the others. The signature
covers every manifest field but the delivery's `payload` (which only says how the bytes on the
wire encode the weights) and itself, as canonical JSON (sorted keys, no spaces). The manifest's
sha256 covers the weights, so a verified manifest plus a matching sha256 pins the exact model.

    edgesync keys --out keys/     # keys/manifest-signing.key (cloud, mode 600), .pub (edges)
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgesync.errors import ConfigError, IntegrityError
from edgesync.tls import read_pem
from edgesync.types import ModelManifest

PRIVATE_NAME = "manifest-signing.key"
PUBLIC_NAME = "manifest-signing.pub"


def canonical_bytes(manifest: ModelManifest) -> bytes:
    """What the signature covers: the manifest without payload and signature, as canonical JSON."""
    data = replace(manifest, payload=None, signature="").to_json()
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 pair to out_dir (the private key readable by its owner only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if private.exists():
        raise ConfigError(f"{private} exists; move it away first (edges trust its public key)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


class ManifestSigner:
    """Signs manifests with the cloud's private key (security.signing_key)."""

    def __init__(self, private_key: Path) -> None:
        try:
            key = serialization.load_pem_private_key(read_pem(private_key, "manifest signing key"), password=None)
        except ValueError as exc:
            raise ConfigError(f"{private_key} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{private_key} is not an Ed25519 key (make one with `edgesync keys`)")
        self._key = key

    def sign(self, manifest: ModelManifest) -> ModelManifest:
        return replace(manifest, signature=self._key.sign(canonical_bytes(manifest)).hex())


class ManifestVerifier:
    """Checks manifests against the cloud's public key (security.verify_key on the edge)."""

    def __init__(self, public_key: Path) -> None:
        self.path = Path(public_key)
        try:
            key = serialization.load_pem_public_key(read_pem(public_key, "manifest verify key"))
        except ValueError as exc:
            raise ConfigError(f"{public_key} is not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{public_key} is not an Ed25519 key (use the .pub that `edgesync keys` wrote)")
        self._key = key

    def verify(self, manifest: ModelManifest, source: str = "model") -> None:
        """Return if the manifest carries a valid signature; raise IntegrityError naming source otherwise."""
        if not manifest.signature:
            raise IntegrityError(f"{source}: the manifest is not signed, and this edge accepts only signed models")
        try:
            signature = bytes.fromhex(manifest.signature)
            self._key.verify(signature, canonical_bytes(manifest))
        except (ValueError, InvalidSignature):
            raise IntegrityError(
                f"{source}: the manifest's signature does not verify with {self.path.name} "
                "(forged, altered, or signed with another key)"
            ) from None
