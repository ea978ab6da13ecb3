"""What an HTTP client is told when a request fails: one status table and one JSON shape.

Every error the server sends is ``{"error": {"code": ..., "message": ...}}``. edgerec's typed
errors (edgerec.errors) map to statuses here and nowhere else, so the server and the HTTP load
test (which predicts the status a bad input must get) agree by construction.
"""

from __future__ import annotations

import json

from ..errors import BundleError, EdgerecError, EmptyQueryError, InputError, ProviderError, UnknownItemError, one_line

# Subclasses before their bases: the first row that matches wins.
STATUS_OF_ERROR: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnknownItemError, 404, "unknown_item"),
    (EmptyQueryError, 422, "empty_query"),
    (InputError, 422, "invalid_value"),
    (TypeError, 422, "invalid_type"),  # the library's wrong-type errors
    (BundleError, 503, "bundle_unavailable"),
    (ProviderError, 503, "device_unavailable"),
    (EdgerecError, 500, "internal"),
)
MAX_MESSAGE_CHARS = 300  # messages can quote the client's input (an unknown id): keep them short


class ApiError(Exception):
    """A request that gets an error answer; raised anywhere in a handler, rendered once."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = one_line(message, MAX_MESSAGE_CHARS)

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def status_of(error: type[BaseException]) -> tuple[int, str]:
    """(HTTP status, error code) for an exception class; 500 "internal" for anything unforeseen."""
    for cls, status, code in STATUS_OF_ERROR:
        if issubclass(error, cls):
            return status, code
    return 500, "internal"


def api_error(exc: BaseException) -> ApiError:
    status, code = status_of(type(exc))
    # A 4xx message explains the client's own input; a 5xx one could name the server's files: logged, not sent.
    return ApiError(status, code, str(exc) if status < 500 else f"{code.replace('_', ' ')} (see the server's log)")


def error_body(code: str, message: str) -> bytes:
    # ensure_ascii: a message quoting a lone surrogate from the client still encodes.
    body = {"error": {"code": code, "message": message}}
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
