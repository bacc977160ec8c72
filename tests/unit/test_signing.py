"""Signed manifests: the cloud signs what it registers, the edge runs only what verifies."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from cloud_trainer.registry import ModelRegistry
from edgesync.config import CloudConfig, parse_config
from edgesync.errors import ConfigError, IntegrityError
from edgesync.signing import ManifestSigner, ManifestVerifier, generate_keypair
from edgesync.types import ModelManifest, PayloadInfo


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def manifest(**changes) -> ModelManifest:
    base = ModelManifest(5, 4, "ab" * 32, 100, "yolov8n.yaml", ("person", "car"), 320, 1700000000.5, {"map50": 0.61})
    return replace(base, **changes)


def test_a_signed_manifest_verifies_and_survives_its_json_round_trip(keys) -> None:
    private, public = keys
    signed = ManifestSigner(private).sign(manifest())
    verifier = ManifestVerifier(public)
    verifier.verify(signed)
    verifier.verify(ModelManifest.from_json(signed.to_json()))
    # how the bytes travel is not part of what is signed: the registry picks it per delivery
    verifier.verify(replace(signed, payload=PayloadInfo("fp16-delta", 0.0, "zstd", 4, "cd" * 32, 10)))


@pytest.mark.parametrize(
    "tamper",
    [
        {"sha256": "00" * 32},  # other weights
        {"metrics": {"map50": 0.99}},  # a better-looking score
        {"version": 6},
        {"class_names": ("car", "person")},
        {"preprocess": "auto-levels"},  # the same weights seeing other frames
    ],
)
def test_any_change_to_a_signed_field_is_refused(keys, tamper: dict) -> None:
    private, public = keys
    signed = ManifestSigner(private).sign(manifest())
    with pytest.raises(IntegrityError, match="does not verify"):
        ManifestVerifier(public).verify(replace(signed, **tamper), "update v5")


def test_unsigned_and_foreign_signatures_are_refused(keys, tmp_path: Path) -> None:
    _, public = keys
    other_private, _ = generate_keypair(tmp_path / "other")
    verifier = ManifestVerifier(public)
    with pytest.raises(IntegrityError, match="not signed"):
        verifier.verify(manifest(), "update v5")
    with pytest.raises(IntegrityError, match="another key"):
        verifier.verify(ManifestSigner(other_private).sign(manifest()))
    with pytest.raises(IntegrityError, match="does not verify"):
        verifier.verify(manifest(signature="not hex"))


def test_keys_are_written_once_with_the_private_one_private(keys) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        generate_keypair(private.parent)


def test_a_missing_or_wrong_key_file_is_a_config_error_naming_it(keys, tmp_path: Path) -> None:
    private, public = keys
    with pytest.raises(ConfigError, match="nope.pub"):
        ManifestVerifier(tmp_path / "nope.pub")
    with pytest.raises(ConfigError, match="public key"):
        ManifestVerifier(private)  # the private PEM where the public one belongs


def test_a_cloud_with_a_signing_key_signs_everything_it_registers(keys, tmp_path: Path) -> None:
    private, public = keys
    cfg = parse_config(CloudConfig, {"data_dir": str(tmp_path / "cloud"), "security": {"signing_key": str(private)}})
    registry = ModelRegistry.for_cloud(cfg)
    first = registry.register("cam-1", b"weights-1", manifest(version=0, parent=0, sha256=""))
    second = registry.register("cam-1", b"weights-2", manifest(version=0, parent=1, sha256=""))
    copy = registry.reissue("cam-1", 1, reissue_of=1.0)  # a rollback re-signs the copy
    verifier = ManifestVerifier(public)
    for stored in (first, second, copy, registry.manifest("cam-1", 3)):
        verifier.verify(stored)
    delivered, _ = registry.delivery("cam-1", 3, held={})
    verifier.verify(delivered)
