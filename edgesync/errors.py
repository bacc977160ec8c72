"""One exception family for the whole project.

Each error carries the HTTP status and gRPC code it maps to, so the gRPC interceptor,
the REST handler and the CLI translate it in one place each.
"""

from __future__ import annotations

import grpc


class EdgeSyncError(Exception):
    """Base error: a message a user can act on, plus its HTTP status and gRPC code."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ConfigError(EdgeSyncError):
    """A config file or value is wrong; the message names the file and the key."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidInput(EdgeSyncError):
    """A request, sample, frame or file is malformed (corrupt JPEG, oversized message, bad id)."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class UnknownEdge(EdgeSyncError):
    """An edge id the cloud has never seen registered."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(EdgeSyncError):
    """A caller without valid credentials (no token, a wrong token)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(EdgeSyncError):
    """A known caller acting beyond its rights: another edge's id, or a revoked edge."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class TryLater(EdgeSyncError):
    """The input is fine but cannot be taken now; the same input later will do (clients keep it)."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class Backpressure(TryLater):
    """The cloud will not take this now (a rate limit, a full queue)."""

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFound(EdgeSyncError):
    """A model version, sample or asset that does not exist."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class IntegrityError(EdgeSyncError):
    """Bytes whose sha256 does not match their manifest, or a truncated transfer."""

    http_status = 422
    grpc_code = grpc.StatusCode.DATA_LOSS


class SourceError(EdgeSyncError):
    """A video source (file, URL, camera) that cannot be opened or read."""

    http_status = 400
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class AssetError(EdgeSyncError):
    """A model or data asset that is missing and cannot be fetched here."""

    http_status = 500
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
