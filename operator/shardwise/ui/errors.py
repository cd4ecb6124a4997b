"""The page API's error: an HTTP status, a message naming the field at fault, and the field."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}
