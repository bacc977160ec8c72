"""Per-edge credentials: each edge proves on every call who it is, and may act only as itself.

The cloud holds one secret (security.edge_secret); an edge's token is HMAC-SHA256(secret, edge
id), so the cloud needs no token database and one edge's token says nothing about another's.
`edgesync edge-token EDGE_ID` prints a token; the edge sends it with its id as gRPC metadata on
every call (EdgeCredentials, a client interceptor), and the cloud checks both, that the edge
acts only under its own id, and that an operator has not revoked it (cloud_trainer.service).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import grpc

from edgesync.errors import ConfigError, Unauthenticated

EDGE_HEADER = "x-edgesync-edge"
AUTH_HEADER = "authorization"
# values people leave in configs from examples and docs; the cloud refuses to start with them
EXAMPLE_SECRETS = frozenset({"change-me", "changeme", "example", "secret", "password", "edgesync", "test"})


def refuse_example_secret(value: str, what: str) -> str:
    """value, unless it is a well-known example value (then a ConfigError naming what)."""
    if value.strip().lower() in EXAMPLE_SECRETS:
        raise ConfigError(f"{what} is left at the example value {value!r}: set a secret of your own")
    if value and len(value) < 16:
        raise ConfigError(f"{what} is {len(value)} characters; use at least 16 (e.g. openssl rand -hex 16)")
    return value


def edge_token(secret: str, edge_id: str) -> str:
    """The token of edge_id under the cloud's secret."""
    return hmac.new(secret.encode(), edge_id.encode(), hashlib.sha256).hexdigest()


def caller_of(metadata: Sequence[tuple[str, str | bytes]] | None, secret: str) -> str:
    """The edge id the call's metadata proves; Unauthenticated if it proves none."""
    found = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (metadata or ())}
    edge_id, auth = found.get(EDGE_HEADER, ""), found.get(AUTH_HEADER, "")
    if not edge_id or not auth.startswith("Bearer "):
        raise Unauthenticated(
            "missing edge credentials: set cloud.token on the edge (the cloud operator prints it with "
            "`edgesync edge-token EDGE_ID`)"
        )
    if not hmac.compare_digest(auth.removeprefix("Bearer ").strip(), edge_token(secret, edge_id)):
        raise Unauthenticated(f"wrong token for edge {edge_id!r}")
    return edge_id


class _Details(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class EdgeCredentials(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the edge's id and token to every call on a channel (grpc.intercept_channel)."""

    def __init__(self, edge_id: str, token: str) -> None:
        self._metadata = [(EDGE_HEADER, edge_id), (AUTH_HEADER, f"Bearer {token}")]

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, [*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)
