"""Client errors and their HTTP statuses and gRPC status codes, in one place.

Every failure the ingress can meet is mapped here to a status (HTTP API) or a code
(gRPC API, :mod:`serve_app.grpc_api`) and a message a client can act on. A client mistake is
never a 500, and none of these errors is raised inside a model replica, so a bad request cannot
take a replica down.

| error                  | status | gRPC code          | when |
|------------------------|--------|--------------------|------|
| MalformedBodyError     | 400    | INVALID_ARGUMENT   | the body is not valid JSON / multipart |
| UnknownModelError      | 404    | NOT_FOUND          | the requested model id is not in the store |
| UnknownTaskError       | 404    | NOT_FOUND          | a task id never issued here, or expired |
| PayloadTooLargeError   | 413    | INVALID_ARGUMENT   | too many images in one request, or too many bytes |
| UnsupportedMediaError  | 415    | INVALID_ARGUMENT   | a content type the endpoint does not take |
| InvalidInputError      | 422    | INVALID_ARGUMENT   | wrong shape, type, range, NaN/inf, empty batch, not an image |
| ServiceBusyError       | 503    | RESOURCE_EXHAUSTED | the graph is saturated (Serve back-pressure); has Retry-After |
| ServiceUnavailableError| 503    | UNAVAILABLE        | a downstream deployment is not reachable right now |
| ServeAppError          | 500    | INTERNAL           | a fault of the service, never of the request |

RESOURCE_EXHAUSTED is also what Serve itself answers a gRPC request that finds the Ingress full,
as it answers 503 over HTTP: a client retries both with back-off.
"""

from __future__ import annotations

from http import HTTPStatus

from grpc import StatusCode


class ServeAppError(Exception):
    """Base class: an error with an HTTP status, a gRPC status code and a client-facing message."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: StatusCode = StatusCode.INTERNAL

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def to_body(self) -> dict[str, object]:
        """The JSON body sent to the client."""
        return {"detail": self.message, "error": type(self).__name__, "status": int(self.status)}


class MalformedBodyError(ServeAppError):
    """The body cannot be parsed at all."""

    status = HTTPStatus.BAD_REQUEST
    grpc_code = StatusCode.INVALID_ARGUMENT


class UnknownModelError(ServeAppError):
    """The requested model id does not exist."""

    status = HTTPStatus.NOT_FOUND
    grpc_code = StatusCode.NOT_FOUND


class UnknownTaskError(ServeAppError):
    """The task id was never issued here, or its result expired."""

    status = HTTPStatus.NOT_FOUND
    grpc_code = StatusCode.NOT_FOUND


class PayloadTooLargeError(ServeAppError):
    """More images or bytes than the service is configured to take in one request."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = StatusCode.INVALID_ARGUMENT


class UnsupportedMediaError(ServeAppError):
    """A content type the endpoint does not accept."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    grpc_code = StatusCode.INVALID_ARGUMENT


class InvalidInputError(ServeAppError):
    """Parsable, but not a valid image batch."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    grpc_code = StatusCode.INVALID_ARGUMENT


class ServiceBusyError(ServeAppError):
    """Saturated: the client should retry after ``retry_after_s`` seconds."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ServiceUnavailableError(ServeAppError):
    """A downstream deployment failed or cannot be reached."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
