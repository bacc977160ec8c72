"""What the Redis store's modules share: URL redaction, error mapping, blocking-call limits."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis

from cloud_trainer.state.base import StoreUnavailable

# Blocking commands wait at most this long per call, well under the socket timeout,
# and are repeated until the caller's own timeout has passed.
BLOCK_CHUNK_S = 5.0
MIN_BLOCK_S = 0.01  # Redis treats a blocking timeout that rounds to 0 ms as "forever"

P = ParamSpec("P")
R = TypeVar("R")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to put in logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable redis URL>"


def available(method: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis connection failures inside a store method into StoreUnavailable naming the URL."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            url = getattr(args[0], "url", "?")
            raise StoreUnavailable(f"Redis at {url} is unreachable: {exc}") from exc

    return wrapper
