"""Cloud trainer state: one StateStore interface, in-process (default) or Redis back-ends."""

from __future__ import annotations

from cloud_trainer.state.base import DEFAULT_MAX_SAMPLES_PER_EDGE, StateStore, StoreUnavailable
from cloud_trainer.state.memory import MemoryStore
from cloud_trainer.state.redis_store import RedisStore
from edgesync.config import MemoryStoreConfig, RedisStoreConfig, StoreConfig

__all__ = [
    "DEFAULT_MAX_SAMPLES_PER_EDGE",
    "MemoryStore",
    "RedisStore",
    "StateStore",
    "StoreUnavailable",
    "build_store",
]


def build_store(cfg: StoreConfig, *, max_samples_per_edge: int = DEFAULT_MAX_SAMPLES_PER_EDGE) -> StateStore:
    """The store the config asks for: in-process for type=memory, Redis at cfg.url for type=redis.

    A Redis that cannot be reached raises StoreUnavailable naming the URL.
    """
    if isinstance(cfg, RedisStoreConfig):
        return RedisStore(cfg.url, cfg.prefix, max_samples_per_edge)
    if isinstance(cfg, MemoryStoreConfig):
        return MemoryStore(max_samples_per_edge)
    raise TypeError(f"unsupported store config {type(cfg).__name__}")
