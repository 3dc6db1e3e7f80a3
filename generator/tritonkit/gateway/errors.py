"""The gateway's one exception, in OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["APIError", "bad_request", "unavailable"]


class APIError(Exception):
    """A request the gateway answers with an HTTP error status and OpenAI's JSON error body."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        #: HTTP headers sent with the error (``Retry-After``, ``Connection: close``).
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's API sends for this error."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    """A 400 ``invalid_request_error`` naming the field ``param``."""
    return APIError(400, message, param=param, code=code)


def unavailable(message: str) -> APIError:
    """A 503: the Triton server behind the gateway does not answer."""
    return APIError(503, message, type_="service_unavailable", code="triton_unavailable")
