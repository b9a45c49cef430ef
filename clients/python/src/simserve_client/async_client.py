"""The asyncio client: `Client`'s methods, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx

from . import _wire
from .errors import OverloadedError, SimserveConnectionError
from .models import ArrayInput, FloatArray, Metric, Neighbours, TableInfo

T = TypeVar("T")


class AsyncClient:
    """A simserve client for asyncio: `Client`'s constructor and methods, awaited.

    ``AsyncClient("http://localhost:8080", api_key=None, timeout=30.0, retries=2)``; requests
    may run concurrently (``asyncio.gather``) over its pool of keep-alive connections. Retries
    after overload wait with ``asyncio.sleep``. Use it as ``async with AsyncClient(...) as
    client:``, or await `aclose()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = base_url
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_wire.headers(api_key), timeout=timeout
        )

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
        >= it, distances <= it); `exclude_self` leaves row i out of its own list.
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
        threshold: float | None = None,
        exclude: Iterable[Iterable[Any]] | None = None,
        item_ids: Sequence[str] | None = None,
        metric: Metric = "cosine",
    ) -> Neighbours: ...

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
    ) -> Neighbours: ...

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
        `exclude` list (one list of item indices per user), with `ids` from `item_ids` (or
        from an items table with ids). With neither: the ``(u, i)`` matrix.
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
            try:
                response = await self._http.request(
                    call.method, call.path, content=call.body, headers=_wire.request_headers(call)
                )
            except httpx.TransportError as err:
                raise SimserveConnectionError(_wire.failure(call, self.base_url, err)) from err
            try:
                return _wire.read_answer(call, response)
            except OverloadedError as err:
                if attempt >= self.retries:
                    raise
                await asyncio.sleep(_wire.retry_delay(attempt, err.retry_after))
                attempt += 1
