"""Domain exceptions, mapped once to HTTP statuses (DRF handler), WebSocket codes and portal pages."""

from __future__ import annotations


class DomainError(Exception):
    """Base of our errors: carries a stable `code` clients can switch on and a message for people."""

    code = "error"
    http_status = 400
    ws_close_code = 4400

    def __init__(self, message: str = "", *, code: str | None = None, fields: dict | None = None):
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()
        if code:
            self.code = code
        self.fields = fields


class NotFound(DomainError):
    """The object does not exist, or is not yours to see."""

    code = "not_found"
    http_status = 404
    ws_close_code = 4404


class Forbidden(DomainError):
    """You may not do this."""

    code = "forbidden"
    http_status = 403
    ws_close_code = 4403


class Unauthenticated(DomainError):
    """Log in first."""

    code = "unauthenticated"
    http_status = 401
    ws_close_code = 4401


class Conflict(DomainError):
    """The object is not in a state that allows this."""

    code = "conflict"
    http_status = 409
    ws_close_code = 4409


class RateLimited(DomainError):
    """Too many requests; slow down."""

    code = "rate_limited"
    http_status = 429
    ws_close_code = 4429


class FileTooLarge(DomainError):
    """The file is larger than the upload limit."""

    code = "file_too_large"
    http_status = 413
    ws_close_code = 4413


class UnsupportedFileType(DomainError):
    """Files of this type cannot be read."""

    code = "unsupported_file_type"
    http_status = 415
    ws_close_code = 4415
