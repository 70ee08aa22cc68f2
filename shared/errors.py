"""One family of domain errors; the HTTP edge maps each to its status and a JSON `error`."""

import math


class DmError(Exception):
    """A request that cannot be done, with text a user can read."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the JSON `error`."""
        return {}


class BadRequest(DmError):
    status = 400


class Unauthorized(DmError):
    status = 401


class Forbidden(DmError):
    status = 403


class NotFound(DmError):
    status = 404


class NotAllowed(DmError):
    status = 405


class Conflict(DmError):
    status = 409


class TooLarge(DmError):
    status = 413


class Unsupported(DmError):
    status = 415


class Unprocessable(DmError):
    status = 422


class Unavailable(DmError):
    """Something the request needs is down for now: 503, retry after `retry_after` seconds."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PermanentFailure(Unprocessable):
    """An event that can never be handled: its consumer answers 422 and the broker dead-letters it.

    Consumers treat every other 4xx error of this family the same way (knative.md §5).
    """
