"""The downlink codec: full and delta payloads round-trip, and bad ones are refused by name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.numpy import load as np_load

from edgesync.config import DownlinkConfig
from edgesync.delta import (
    _from_keys,
    _pack_int16,
    _to_keys,
    _unpack_int16,
    apply_payload,
    decode_update,
    encode_delta,
    encode_full,
    parse_downlink,
    prepare,
)
from edgesync.errors import ConfigError, IntegrityError
from edgesync.types import ModelManifest, PayloadInfo
from edgesync.weights import encode_state_dict, sha256_hex

ENCODINGS = [("fp16-delta", None), ("int8-delta", None), ("fp16-delta", 0.1), ("int8-delta", 0.1)]


def _state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(64, 32, 3, generator=gen) * 0.1,
        "conv.bias": torch.randn(64, generator=gen),
        "bn.running_var": torch.rand(64, generator=gen) + 0.5,
        "bn.num_batches_tracked": torch.tensor(100, dtype=torch.int64),
        "head.scale": torch.tensor(0.5),  # a 0-d float tensor
        "frozen.weight": torch.randn(16, 16, generator=gen),
    }


def _fine_tuned(state: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    """A fine-tune step: small changes to most tensors (some values cross zero), a frozen one left alone."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for name in ("conv.weight", "conv.bias", "bn.running_var"):
        out[name] = state[name] + torch.randn(state[name].shape, generator=gen) * 0.003
    out["head.scale"] = torch.tensor(0.52)
    out["bn.num_batches_tracked"] = torch.tensor(130, dtype=torch.int64)
    return out


@pytest.fixture(scope="module")
def base() -> bytes:
    return encode_state_dict(_state(0))


@pytest.fixture(scope="module")
def target(base: bytes) -> bytes:
    return encode_state_dict(_fine_tuned(_state(0)))


def _manifest(weights: bytes, payload: PayloadInfo | None = None) -> ModelManifest:
    return ModelManifest(
        version=2,
        parent=1,
        sha256=sha256_hex(weights),
        size_bytes=len(weights),
        arch="yolov8n.yaml",
        class_names=("person", "car"),
        imgsz=64,
        payload=payload,
    )


def _max_error(a: bytes, b: bytes) -> float:
    ta, tb = np_load(a), np_load(b)
    return max(float(np.abs(ta[k].astype(np.float64) - tb[k].astype(np.float64)).max()) for k in ta)


# ---------------------------------------------------------------- round trips


def test_fp16_keys_are_a_bijection_that_keeps_numeric_order() -> None:
    bits = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    keys = _to_keys(bits.view(np.float16))
    assert len(np.unique(keys)) == 65536
    assert np.array_equal(_from_keys(keys).view(np.int16), bits)
    finite = np.isfinite(bits.view(np.float16))
    ordered = bits.view(np.float16)[finite][np.argsort(keys[finite])].astype(np.float64)
    assert np.all(np.diff(ordered) >= 0)


def test_int16_packing_round_trips_and_puts_small_magnitudes_in_low_bytes() -> None:
    values = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    assert np.array_equal(_unpack_int16(_pack_int16(values)), values)
    small = np.array([0, -1, 1, -2, 2], np.int16)
    assert _pack_int16(small).tolist() == [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]  # zigzag low bytes, then zero high bytes


@pytest.mark.parametrize("compression", ["", "zstd"])
def test_full_payload_round_trips(target: bytes, compression: str) -> None:
    info, payload = encode_full(target, compression)
    assert apply_payload(info, payload, None) == target
    assert info.size_bytes == len(payload) and info.compression == compression


@pytest.mark.parametrize("compression", ["", "zstd"])
def test_dense_fp16_delta_rebuilds_the_exact_weights(base: bytes, target: bytes, compression: str) -> None:
    info, payload = encode_delta(target, base, 1, "fp16-delta", None, compression)
    assert apply_payload(info, payload, base) == target
    assert info.base_version == 1 and info.base_sha256 == sha256_hex(base)


@pytest.mark.parametrize(("encoding", "fraction"), ENCODINGS)
def test_every_delta_encoding_round_trips_within_its_error(
    base: bytes, target: bytes, encoding: str, fraction: float | None
) -> None:
    info, payload = encode_delta(target, base, 1, encoding, fraction)
    rebuilt = apply_payload(info, payload, base)
    assert np_load(rebuilt).keys() == np_load(target).keys()
    # integer buffers travel whole; unchanged tensors come from the base
    assert int(np_load(rebuilt)["bn.num_batches_tracked"]) == 130
    assert np.array_equal(np_load(rebuilt)["frozen.weight"], np_load(base)["frozen.weight"])
    error = _max_error(rebuilt, target)
    if encoding == "int8-delta" and not fraction:
        assert 0 < error < 0.003  # half an int8 step of a ~0.015 max change, plus fp16 rounding
    if fraction:
        assert error > 0  # left-out changes are lost...
        assert error < _max_error(base, target)  # ...but the largest ones were sent
    # the payload decodes the same way every time (the edge and the cloud agree)
    assert apply_payload(info, payload, base) == rebuilt


def test_deltas_are_much_smaller_than_full_weights(base: bytes, target: bytes) -> None:
    full = encode_full(target, "zstd")[0].size_bytes
    sizes = {(e, f): encode_delta(target, base, 1, e, f)[0].size_bytes for e, f in ENCODINGS}
    assert sizes[("fp16-delta", None)] < 0.8 * full  # on real yolov8n fine-tunes: about 0.2 (see BENCHMARKS.md)
    assert sizes[("int8-delta", None)] < sizes[("fp16-delta", None)]
    assert sizes[("int8-delta", 0.1)] < 0.25 * full


def test_a_delta_between_identical_weights_is_nearly_empty(base: bytes) -> None:
    info, payload = encode_delta(base, base, 1, "fp16-delta")
    assert len(payload) < 200
    assert apply_payload(info, payload, base) == base


def test_no_delta_between_different_architectures(base: bytes) -> None:
    other = encode_state_dict({**_state(0), "conv.bias": torch.zeros(32)})
    assert encode_delta(other, base, 1, "fp16-delta") is None


def test_prepare_rebuilds_lossy_candidates_and_keeps_exact_ones(base: bytes, target: bytes) -> None:
    exact = prepare(target, base, 1, DownlinkConfig(encoding="fp16-delta"))
    assert not exact.lossy and exact.weights == target and exact.payload is not None
    lossy = prepare(target, base, 1, DownlinkConfig(encoding="int8-delta", sparse_fraction=0.2))
    assert lossy.lossy and lossy.weights != target
    info, payload = lossy.payload
    assert apply_payload(info, payload, base) == lossy.weights
    full = prepare(target, base, 1, DownlinkConfig(encoding="full"))
    assert (full.weights, full.payload, full.lossy) == (target, None, False)


# ---------------------------------------------------------------- refusals


def _delta_update(base: bytes, target: bytes, encoding: str = "int8-delta") -> tuple[ModelManifest, bytes, bytes]:
    update = prepare(target, base, 1, DownlinkConfig(encoding=encoding))
    info, payload = update.payload
    return _manifest(update.weights, info), payload, update.weights


def test_decode_update_rebuilds_and_returns_the_canonical_manifest(base: bytes, target: bytes) -> None:
    manifest, payload, weights = _delta_update(base, target)
    canonical, rebuilt = decode_update(manifest, payload, {1: base}.get)
    assert rebuilt == weights and canonical.payload is None and canonical.sha256 == sha256_hex(weights)


def test_a_delta_against_a_base_the_edge_does_not_hold_is_refused(base: bytes, target: bytes) -> None:
    manifest, payload, _ = _delta_update(base, target)
    with pytest.raises(IntegrityError, match="wrong base: it is a delta against v1, which this edge does not hold"):
        decode_update(manifest, payload, {}.get)


def test_a_delta_against_other_weights_under_the_same_version_is_refused(base: bytes, target: bytes) -> None:
    manifest, payload, _ = _delta_update(base, target)
    other = encode_state_dict(_state(7))
    with pytest.raises(IntegrityError, match=r"wrong base: .* v1 with sha256 .*, but this edge's v1 is"):
        decode_update(manifest, payload, {1: other}.get)


@pytest.mark.parametrize("cut", [1, 100])
def test_a_truncated_delta_is_refused(base: bytes, target: bytes, cut: int) -> None:
    manifest, payload, _ = _delta_update(base, target)
    short = payload[:-cut]
    with pytest.raises(IntegrityError, match=rf"truncated int8-delta from v1 \(zstd\): {len(short)} of {len(payload)}"):
        decode_update(manifest, short, {1: base}.get)


def test_a_delta_cut_short_but_announced_at_its_cut_length_is_still_refused(base: bytes, target: bytes) -> None:
    manifest, payload, _ = _delta_update(base, target)
    short = payload[: len(payload) // 2]
    lying = dataclasses.replace(manifest, payload=dataclasses.replace(manifest.payload, size_bytes=len(short)))
    with pytest.raises(IntegrityError, match="corrupt or truncated zstd payload"):
        decode_update(lying, short, {1: base}.get)


def test_a_delta_whose_rebuilt_sha256_does_not_match_is_refused(base: bytes, target: bytes) -> None:
    # the cloud registered the trained weights but sent a lossy delta of them: the edge cannot rebuild them
    info, payload = encode_delta(target, base, 1, "int8-delta")
    manifest = _manifest(target, info)
    with pytest.raises(IntegrityError, match="rebuilt weights do not match the manifest .*sha256 expected"):
        decode_update(manifest, payload, {1: base}.get)


def test_a_payload_whose_encoding_disagrees_with_its_manifest_is_refused(base: bytes, target: bytes) -> None:
    manifest, payload, _ = _delta_update(base, target, "int8-delta")
    wrong = dataclasses.replace(manifest, payload=dataclasses.replace(manifest.payload, encoding="fp16-delta"))
    with pytest.raises(IntegrityError, match="payload is 'int8-delta', manifest says 'fp16-delta'"):
        decode_update(wrong, payload, {1: base}.get)


# ---------------------------------------------------------------- config


def test_downlink_short_forms_parse_and_bad_ones_name_the_problem() -> None:
    assert parse_downlink("int8-delta@0.1") == DownlinkConfig(encoding="int8-delta", sparse_fraction=0.1)
    assert parse_downlink("full:raw") == DownlinkConfig(encoding="full", compress=False)
    with pytest.raises(ConfigError, match="encoding"):
        parse_downlink("int4-delta")
    with pytest.raises(ConfigError, match="sparse_fraction needs a delta encoding"):
        parse_downlink("full@0.1")


def test_a_delta_is_the_same_bytes_in_every_process(base: bytes, tmp_path) -> None:
    """safetensors writes its metadata map in a per-process order; the codec sorts it, so the same
    weights give the same payload (and the bench's downlink bytes repeat to the byte)."""
    import subprocess
    import sys

    target = encode_state_dict(_fine_tuned(_state(0)))
    (tmp_path / "base").write_bytes(base)
    (tmp_path / "target").write_bytes(target)
    script = (
        "import sys, hashlib; from pathlib import Path; from edgesync.delta import encode_delta; "
        "d = Path(sys.argv[1]); info, payload = encode_delta((d / 'target').read_bytes(), "
        "(d / 'base').read_bytes(), 1, 'fp16-delta', None, ''); print(hashlib.sha256(payload).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True).stdout
        for _ in range(4)
    }
    assert len(digests) == 1, digests
