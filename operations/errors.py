"""Errors a use case raises on purpose; the web layer maps each to one HTTP status and JSON shape."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class TooLarge(AppError):
    status_code = 413
    code = "too_large"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class Busy(AppError):
    status_code = 429
    code = "busy"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class NotReady(AppError):
    """The service is up but cannot serve yet (waiting for a store at start-up)."""

    status_code = 503
    code = "not_ready"
