"""OpenAI-style error responses: what the SDK turns into ``openai.BadRequestError`` and friends."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_TYPES", "FakeAPIError"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


class FakeAPIError(Exception):
    """A request the fake refuses, rendered as OpenAI's ``{"error": {...}}`` body."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }
