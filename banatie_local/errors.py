"""The errors the API speaks: one class per HTTP status, the code names the case.

Services raise these; ``http/errors.py`` renders every one of them, and every other
exception, into the single error envelope of API.md §0.1.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a human sentence."""

    status = 500
    default_code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.headers = headers or {}


class ValidationError(ApiError):
    status = 400
    default_code = "VALIDATION_ERROR"

    def __init__(self, message: str, code: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message, code, {"field": field} if field else None)


class AuthError(ApiError):
    status = 401
    default_code = "INVALID_API_KEY"


class ForbiddenError(ApiError):
    status = 403
    default_code = "FORBIDDEN"


class NotFoundError(ApiError):
    status = 404
    default_code = "NOT_FOUND"


class ConflictError(ApiError):
    status = 409
    default_code = "CONFLICT"


class PayloadTooLargeError(ApiError):
    status = 413
    default_code = "FILE_TOO_LARGE"


class UnsupportedMediaTypeError(ApiError):
    status = 415
    default_code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimitError(ApiError):
    status = 429
    default_code = "RATE_LIMIT_EXCEEDED"


class GenerationFailedError(ApiError):
    status = 502
    default_code = "GENERATION_FAILED"


class DatabaseBusyError(ApiError):
    """The database stayed locked (by another process) past ``database.busy_timeout_ms``."""

    status = 503
    default_code = "DATABASE_BUSY"

    def __init__(
        self,
        retry_after: int = 1,
        message: str = "the database is busy; retry shortly.",
        code: str | None = None,
    ) -> None:
        super().__init__(message, code, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailableError(DatabaseBusyError):
    """The database server cannot be reached (restarting, network): 503 until it is."""

    def __init__(self) -> None:
        super().__init__(
            2, "the database cannot be reached now; retry shortly.", "DATABASE_UNAVAILABLE"
        )
