"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx

from . import _wire
from .errors import ClientClosedError, OverloadedError, SimserveConnectionError
from .models import (
    ArrayInput,
    DenseNeighbours,
    DenseUserItemNeighbours,
    FloatArray,
    Metric,
    Neighbours,
    TableInfo,
    UserItemNeighbours,
)

T = TypeVar("T")


class Client:
    """A simserve client over one pool of keep-alive connections (blocking).

    ``Client("http://localhost:8080", api_key=None, timeout=30.0, retries=2,
    max_retry_wait=30.0, retry_stale_connection=True)``: `api_key` is sent as a bearer token
    (for a server run with ``--api-keys``); `timeout` bounds connecting, sending and each wait
    for answer bytes, in seconds; `retries` is how many times a request refused for overload
    (503) is sent again, waiting at least the answer's ``Retry-After`` but never more than
    `max_retry_wait` seconds (when the server asks for longer, its `OverloadedError` is
    raised at once). A request that went out on a reused kept-alive connection which failed
    while the request was being sent, or within 0.1 s after it was fully sent
    (`_wire.STALE_CONNECTION_WINDOW`), before any answer, is sent once more on a new
    connection, whatever `retries` says (the race of a server closing an idle connection
    just as a request goes out); `retry_stale_connection=False` turns that off.

    Arrays go out as base64 float32 whatever their dtype (nested lists too), and come back as
    float32 numpy arrays. Error answers raise `ProblemError` (`OverloadedError` for overload
    once retries are used up); an unreachable or silent server raises
    `SimserveConnectionError`, an answer that cannot be read `SimserveError`, and a call
    after `close()` `ClientClosedError`. Arguments refused before sending raise ValueError.
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        max_retry_wait: float = _wire.MAX_RETRY_WAIT,
        retry_stale_connection: bool = True,
    ) -> None:
        _wire.check_retry_settings(retries, max_retry_wait)
        self.base_url = base_url
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.retry_stale_connection = retry_stale_connection
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "headers": _wire.headers(api_key),
            "timeout": timeout,
        }
        self._http = httpx.Client(**self._options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def pairwise(
        self,
        a: ArrayInput | None = None,
        b: ArrayInput | None = None,
        *,
        pairs: ArrayInput | None = None,
        metric: Metric = "cosine",
    ) -> FloatArray:
        """Row i of `a` against row i of `b`: one score per row, shape ``(n,)``.

        `a` and `b` are ``(n, dim)`` (either may have one row, compared with every row of the
        other). Or give `pairs` of shape ``(n, 2, dim)`` instead: the input of a Keras
        ``Lambda`` layer over pairs.
        """
        return self._call(_wire.pairwise_call(a, b, pairs, metric))

    @overload
    def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: None = None,
        threshold: None = None,
        exclude_self: bool = False,
    ) -> FloatArray: ...

    @overload
    def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: int,
        threshold: None = None,
        exclude_self: bool = False,
    ) -> DenseNeighbours: ...

    @overload
    def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: int,
        threshold: float | None = None,
        exclude_self: bool = False,
    ) -> Neighbours: ...

    @overload
    def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: int | None = None,
        threshold: float,
        exclude_self: bool = False,
    ) -> Neighbours: ...

    def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: int | None = None,
        threshold: float | None = None,
        exclude_self: bool = False,
    ) -> FloatArray | Neighbours:
        """Every row of `a` against every row of `b` (or of `a` itself when `b` is None).

        2-D input ``(n, dim)`` gives an ``(n, m)`` float32 matrix; 3-D input ``(sets, n, dim)``
        holds independent sets and gives ``(sets, n, m)``. With `top_k` and/or `threshold`,
        returns `Neighbours` per row instead (nearest first; `threshold` keeps similarities
        >= it, distances <= it); `exclude_self` leaves row i out of its own list. When `b`
        (or `a` against itself) comes from a table with ids, the neighbours carry their `ids`.
        """
        return self._call(_wire.matrix_call(a, b, metric, top_k, threshold, exclude_self))

    @overload
    def user_item(
        self,
        users: ArrayInput,
        items: ArrayInput,
        *,
        pairs: Iterable[Iterable[Any]] | None = None,
        top_k: None = None,
        threshold: None = None,
        exclude: Iterable[Iterable[Any]] | None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> FloatArray: ...

    @overload
    def user_item(
        self,
        users: ArrayInput,
        items: ArrayInput,
        *,
        pairs: None = None,
        top_k: int,
        threshold: None = None,
        exclude: None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> DenseUserItemNeighbours: ...

    @overload
    def user_item(
        self,
        users: ArrayInput,
        items: ArrayInput,
        *,
        pairs: None = None,
        top_k: int,
        threshold: float | None = None,
        exclude: Iterable[Iterable[Any]] | None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> UserItemNeighbours: ...

    @overload
    def user_item(
        self,
        users: ArrayInput,
        items: ArrayInput,
        *,
        pairs: None = None,
        top_k: int | None = None,
        threshold: float,
        exclude: Iterable[Iterable[Any]] | None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> UserItemNeighbours: ...

    def user_item(
        self,
        users: ArrayInput,
        items: ArrayInput,
        *,
        pairs: Iterable[Iterable[Any]] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        exclude: Iterable[Iterable[Any]] | None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> FloatArray | Neighbours:
        """Users ``(u, dim)`` against items ``(i, dim)``.

        With `pairs` (``[user_index, item_index]`` rows): one score per pair. With `top_k`
        and/or `threshold`: `Neighbours`, the nearest items per user, leaving out each user's
        `exclude` list (one list per user of item indices, or of item ids where the items
        have ids), with `ids` from `item_ids` (or from an items table with ids). With neither:
        the ``(u, i)`` matrix. Indices and `top_k` must be integers (Python or numpy) and
        `threshold` a finite number, or ValueError names the one at fault.
        """
        return self._call(
            _wire.user_item_call(users, items, pairs, top_k, threshold, exclude, item_ids, metric)
        )

    def tables(self) -> list[TableInfo]:
        """The tables the server has loaded (``GET /tables``)."""
        return self._call(_wire.tables_call())

    def table(self, name: str) -> TableInfo:
        """One table (``GET /tables/{name}``); `ProblemError` with status 404 if unknown."""
        return self._call(_wire.table_call(name))

    def _call(self, call: _wire.Call[T]) -> T:
        attempt = 0
        while True:
            response = self._send(call)
            try:
                return _wire.read_answer(call, response)
            except OverloadedError as err:
                if attempt >= self.retries:
                    raise
                delay = _wire.retry_delay(attempt, err.retry_after, self.max_retry_wait)
                if delay is None:  # the server asks for a longer wait than max_retry_wait
                    raise
                time.sleep(delay)
                attempt += 1

    def _send(self, call: _wire.Call[T]) -> httpx.Response:
        """Sends `call` once; and once more, on a new connection, when the kept-alive
        connection it went out on turns out closed by the server before any answer, while
        sending or just after (`_wire.ConnectionWatch.closed_before_answer`), unless
        `retry_stale_connection` is False."""
        if self._http.is_closed:
            raise ClientClosedError(_wire.closed(call))
        watch = _wire.ConnectionWatch()
        try:
            return self._request(self._http, call, watch.extensions())
        except httpx.TransportError as err:
            if not (self.retry_stale_connection and watch.closed_before_answer(err)):
                raise SimserveConnectionError(_wire.failure(call, self.base_url, err)) from err
        with httpx.Client(**self._options) as fresh:
            try:
                return self._request(fresh, call, {})
            except httpx.TransportError as err:
                raise SimserveConnectionError(_wire.failure(call, self.base_url, err)) from err

    def _request(
        self, http: httpx.Client, call: _wire.Call[T], extensions: dict[str, Any]
    ) -> httpx.Response:
        try:
            return http.request(
                call.method,
                call.path,
                content=call.body,
                headers=_wire.request_headers(call),
                extensions=extensions,
            )
        except httpx.DecodingError as err:  # a body that its content-encoding does not fit
            raise _wire.unreadable(call, err) from err
