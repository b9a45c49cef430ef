"""Exceptions: problem+json answers, overload, and failures to reach the server."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime

import httpx

OVERLOADED = "urn:simserve:problem:overloaded"
"""The problem `type` of a 503 sent because the server's queue or memory budget is full."""


class SimserveError(Exception):
    """Base class of every error this package raises about a request."""


class ProblemError(SimserveError):
    """The server answered with an error: an RFC 9457 `application/problem+json` document.

    Attributes mirror the document: `status` (the HTTP status), `type` (a stable identifier
    such as ``urn:simserve:problem:invalid-request``), `title`, `detail` (what is wrong, naming
    the field and index at fault) and `request_id` (the answer's ``x-request-id``, to find the
    request in the server's logs). An error answer that is not problem+json (say, from a
    gateway) gives ``type="about:blank"`` and the start of its body as `detail`.
    """

    def __init__(
        self, status: int, type: str, title: str, detail: str, request_id: str | None
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.request_id = request_id
        request = f" (request {request_id})" if request_id else ""
        super().__init__(f"{status} {title}: {detail} [{type}]{request}")


class OverloadedError(ProblemError):
    """503: every compute permit is busy and the queue is full, or memory is taken.

    `retry_after` is the server's ``Retry-After`` in seconds (None when absent). The clients
    retry these themselves (`retries`); this is raised once those retries are used up.
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        request_id: str | None,
        retry_after: float | None,
    ) -> None:
        super().__init__(status, type, title, detail, request_id)
        self.retry_after = retry_after


class SimserveConnectionError(SimserveError):
    """The server could not be reached or did not answer in time.

    The underlying ``httpx`` error is chained as ``__cause__``.
    """


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The exception for an error answer (status 4xx or 5xx)."""
    fallback_id = response.headers.get("x-request-id")
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and "application/problem+json" in response.headers.get(
        "content-type", ""
    ):
        status = int(body.get("status", response.status_code))
        kind = str(body.get("type", "about:blank"))
        title = str(body.get("title", response.reason_phrase))
        detail = str(body.get("detail", ""))
        request_id = str(body["request_id"]) if "request_id" in body else fallback_id
    else:
        status = response.status_code
        kind = "about:blank"
        title = response.reason_phrase
        detail = response.text[:300]
        request_id = fallback_id
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    # A gateway's plain 503 with Retry-After is overload too.
    plain_overload = kind == "about:blank" and retry_after is not None
    if status == 503 and (kind == OVERLOADED or plain_overload):
        return OverloadedError(status, kind, title, detail, request_id, retry_after)
    return ProblemError(status, kind, title, detail, request_id)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
