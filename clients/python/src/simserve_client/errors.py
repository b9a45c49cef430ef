"""Exceptions: problem+json answers, overload, and failures to reach the server."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

OVERLOADED = "urn:simserve:problem:overloaded"
"""The problem `type` of a 503 sent because the server's queue or memory budget is full."""


class SimserveError(Exception):
    """Base class of every error this package raises about a request.

    Every one pickles with all its attributes (so it crosses process boundaries, say out of
    a ``ProcessPoolExecutor`` worker); the chained ``__cause__`` does not travel, as with
    any exception.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from `args` and the attributes, not by calling __init__ again: the
        # subclasses' constructors take fields, while `args` holds the message.
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[SimserveError], args: tuple[Any, ...]) -> SimserveError:
    """Unpickles a `SimserveError`; pickle then restores its attributes (``__setstate__``)."""
    error = cls.__new__(cls)
    error.args = args
    return error


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

    `retry_after` is the server's ``Retry-After`` in seconds (None when absent or not a
    finite, non-negative number of seconds or an HTTP date). The clients retry these
    themselves (`retries`); this is raised once those retries are used up, or at once when
    the server asks for a longer wait than the client's `max_retry_wait`.
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


class ClientClosedError(SimserveError, RuntimeError):
    """The client was used after `close()` (or after its ``with`` block). Also a
    RuntimeError, which is what using a closed client raised before."""


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The exception for an error answer (status 4xx or 5xx). Never raises: a problem
    document with fields of the wrong type falls back on the answer's own status and reason."""
    fallback_id = response.headers.get("x-request-id")
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and "application/problem+json" in response.headers.get(
        "content-type", ""
    ):
        status = body.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            status = response.status_code
        kind = _text(body.get("type"), "about:blank")
        title = _text(body.get("title"), response.reason_phrase)
        detail = _text(body.get("detail"), "")
        request_id = _text(body.get("request_id"), fallback_id)
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


def _text(value: Any, missing: T) -> str | T:
    """A problem field as text: `missing` when absent or null, else ``str(value)``."""
    return missing if value is None else str(value)


_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds (digits, a fraction tolerated) or an HTTP
    date (0 once past); None when absent or anything else, such as ``inf``, ``nan``, ``-1``
    or a number too large for a float."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with no zone said
        when = when.replace(tzinfo=timezone.utc)
    try:
        return max(0.0, when.timestamp() - time.time())
    except (OverflowError, OSError, ValueError):
        return None
