"""One gRPC server interceptor for logging and error mapping.

Handlers raise EdgeSyncError subclasses; this turns each into its gRPC status code with the
error's message, and anything unexpected into INTERNAL without leaking a traceback to clients.
"""

from __future__ import annotations

import logging
import time

import grpc

from edgesync.errors import EdgeSyncError

log = logging.getLogger(__name__)


def _abort(context: grpc.ServicerContext, method: str, exc: Exception):
    if isinstance(exc, EdgeSyncError):
        log.warning("%s refused: %s", method, exc)
        context.abort(exc.grpc_code, str(exc))
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}")


def _wrap_unary(behavior, method: str):
    def handler(request, context):
        start = time.perf_counter()
        try:
            return behavior(request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or context.code() is not None:
                raise
            _abort(context, method, exc)
        finally:
            log.debug("%s took %.1f ms", method, (time.perf_counter() - start) * 1000)

    return handler


def _wrap_stream(behavior, method: str):
    def handler(request, context):
        try:
            yield from behavior(request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or context.code() is not None:
                raise
            _abort(context, method, exc)

    return handler


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Maps EdgeSyncError to gRPC status codes and logs every failure once."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method),
            handler.request_deserializer,
            handler.response_serializer,
        )
