"""The asyncio client: `Client`'s methods, awaited."""

from __future__ import annotations

import asyncio
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


class AsyncClient:
    """A simserve client for asyncio: `Client`'s constructor and methods, awaited.

    ``AsyncClient("http://localhost:8080", api_key=None, timeout=30.0, retries=2,
    max_retry_wait=30.0, retry_stale_connection=True)``; requests may run concurrently
    (``asyncio.gather``) over its pool of keep-alive connections. Retries after overload wait
    with ``asyncio.sleep``, never longer than `max_retry_wait`; a request whose reused
    kept-alive connection failed while it was being sent or within 0.1 s after, before any
    answer, is sent once more on a new connection, as with `Client` (unless
    `retry_stale_connection` is False). Use it as ``async with AsyncClient(...) as client:``,
    or await `aclose()`.
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
        self._http = httpx.AsyncClient(**self._options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def pairwise(
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
        return await self._call(_wire.pairwise_call(a, b, pairs, metric))

    @overload
    async def matrix(
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
    async def matrix(
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
    async def matrix(
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
    async def matrix(
        self,
        a: ArrayInput,
        b: ArrayInput | None = None,
        *,
        metric: Metric = "cosine",
        top_k: int | None = None,
        threshold: float,
        exclude_self: bool = False,
    ) -> Neighbours: ...

    async def matrix(
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
        return await self._call(_wire.matrix_call(a, b, metric, top_k, threshold, exclude_self))

    @overload
    async def user_item(
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
    async def user_item(
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
    async def user_item(
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
    async def user_item(
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

    async def user_item(
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
        return await self._call(
            _wire.user_item_call(users, items, pairs, top_k, threshold, exclude, item_ids, metric)
        )

    async def tables(self) -> list[TableInfo]:
        """The tables the server has loaded (``GET /tables``)."""
        return await self._call(_wire.tables_call())

    async def table(self, name: str) -> TableInfo:
        """One table (``GET /tables/{name}``); `ProblemError` with status 404 if unknown."""
        return await self._call(_wire.table_call(name))

    async def _call(self, call: _wire.Call[T]) -> T:
        attempt = 0
        while True:
            response = await self._send(call)
            try:
                return _wire.read_answer(call, response)
            except OverloadedError as err:
                if attempt >= self.retries:
                    raise
                delay = _wire.retry_delay(attempt, err.retry_after, self.max_retry_wait)
                if delay is None:  # the server asks for a longer wait than max_retry_wait
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    async def _send(self, call: _wire.Call[T]) -> httpx.Response:
        """Sends `call` once; and once more, on a new connection, when the kept-alive
        connection it went out on turns out closed by the server before any answer, while
        sending or just after (`_wire.ConnectionWatch.closed_before_answer`), unless
        `retry_stale_connection` is False."""
        if self._http.is_closed:
            raise ClientClosedError(_wire.closed(call))
        watch = _wire.ConnectionWatch()
        try:
            return await self._request(self._http, call, watch.async_extensions())
        except httpx.TransportError as err:
            if not (self.retry_stale_connection and watch.closed_before_answer(err)):
                raise SimserveConnectionError(_wire.failure(call, self.base_url, err)) from err
        async with httpx.AsyncClient(**self._options) as fresh:
            try:
                return await self._request(fresh, call, {})
            except httpx.TransportError as err:
                raise SimserveConnectionError(_wire.failure(call, self.base_url, err)) from err

    async def _request(
        self, http: httpx.AsyncClient, call: _wire.Call[T], extensions: dict[str, Any]
    ) -> httpx.Response:
        try:
            return await http.request(
                call.method,
                call.path,
                content=call.body,
                headers=_wire.request_headers(call),
                extensions=extensions,
            )
        except httpx.DecodingError as err:  # a body that its content-encoding does not fit
            raise _wire.unreadable(call, err) from err
