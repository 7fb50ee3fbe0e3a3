"""The errors of Runloop's API client, and what each means to an operator.

Callers catch the level they can act on::

    RunloopError                 anything that made a request or a sync fail
    ├── AuthError                401/403: the key was refused; retrying will not help
    ├── TransientError           network failures, timeouts, 408/409/429/5xx, after retries ran out
    │   └── RateLimitedError     429, or a request held back because Retry-After has not expired
    ├── BadResponseError         a body that is not JSON or not of the documented shape
    │   └── ResponseTooLargeError  a body larger than MAX_BODY_BYTES, refused before it is read whole
    ├── PaginationError          the cursor does not advance; paging stopped after a bounded number of pages
    ├── ApiError                 any other unexpected status (400, 404 on a list, ...)
    └── CancelledError           the exporter is shutting down, or the sync ran past its deadline
        └── ShutdownError        the exporter is shutting down (not a failure of Runloop or of the sync)

"""

from __future__ import annotations


class RunloopError(Exception):
    """Base of every error the client raises."""


class AuthError(RunloopError):
    """The API refused the key (401 or 403); `status` says which."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class TransientError(RunloopError):
    """A failure that may pass: network, timeout, 408/409/429/5xx.

    `retry_after` is the server's own Retry-After in seconds when it gave one we honour.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """Runloop asked us to wait (429); `retry_at` is the monotonic time before which nothing is sent."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message, None)
        self.retry_at = retry_at


class BadResponseError(RunloopError):
    """The body was not JSON, or not the documented shape."""


class ResponseTooLargeError(BadResponseError):
    """The body was larger than MAX_BODY_BYTES; reading stopped there."""


class PaginationError(RunloopError):
    """Paging did not advance (same cursor, repeated page, has_more with nothing more)."""


class ApiError(RunloopError):
    """An unexpected HTTP status that retrying will not fix; `status` is that status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class CancelledError(RunloopError):
    """Stopped on purpose: shutdown, or the sync's deadline passed."""


class ShutdownError(CancelledError):
    """Stopped because the exporter is shutting down."""


def cannot_read_jobs(exc: AuthError | ApiError) -> bool:
    """403 or 404 from the jobs endpoints: this key or account cannot read benchmark jobs (a beta)."""
    return exc.status in (403, 404)


def explain(exc: BaseException, base_url: str) -> str:
    """One line saying what is wrong, in the operator's terms (--once, check and the status page)."""
    if isinstance(exc, AuthError):
        return f"{exc}: check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE"
    if isinstance(exc, RateLimitedError):
        return f"Runloop asked us to slow down ({exc}); try again later"
    if isinstance(exc, TransientError):
        return f"cannot reach {base_url}, or it keeps failing ({exc}): check RUNLOOP_BASE_URL and the network"
    if isinstance(exc, BadResponseError | ApiError):
        return f"{base_url} did not answer like Runloop's API ({exc}): check RUNLOOP_BASE_URL"
    if isinstance(exc, PaginationError):
        return f"paging through {base_url} did not work: {exc}"
    if isinstance(exc, CancelledError):
        return f"stopped: {exc}"
    # A bug's message may carry record data: name its type only; the log has the traceback.
    return f"unexpected error: {type(exc).__name__} (a bug: the log has its traceback)"
