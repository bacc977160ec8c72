"""Model weights as safetensors bytes, with sha256 verification.

Weights never travel as pickle. Floating tensors are stored in fp16: ultralytics itself saves
its checkpoints in fp16, so this loses nothing against what the trainer produced and halves
the downlink.
"""

from __future__ import annotations

import hashlib

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from edgesync.errors import IntegrityError, InvalidInput


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_state_dict(state: dict[str, torch.Tensor]) -> bytes:
    """Serialise a state dict to safetensors bytes (floats as fp16, others unchanged)."""
    tensors = {}
    for name, tensor in state.items():
        t = tensor.detach().cpu()
        tensors[name] = t.half().contiguous() if t.is_floating_point() else t.contiguous()
    return st_save(tensors)


def decode_state_dict(data: bytes, expected_sha256: str | None = None, source: str = "weights") -> dict:
    """Parse safetensors bytes into fp32 tensors, refusing bytes whose sha256 is not the expected one."""
    if expected_sha256 is not None:
        actual = sha256_hex(data)
        if actual != expected_sha256:
            raise IntegrityError(
                f"{source}: sha256 mismatch (expected {expected_sha256[:12]}…, got {actual[:12]}…); refusing it"
            )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InvalidInput(f"{source}: not a valid safetensors file: {exc}") from None
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
