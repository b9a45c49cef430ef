"""The asyncio client against a real simserve: the same methods, errors, and concurrency."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import numpy as np
import pytest
import reference as ref
from servers import HeldRequest, Server

from simserve_client import (
    AsyncClient,
    ClientClosedError,
    Neighbours,
    OverloadedError,
    ProblemError,
    SimserveConnectionError,
    SimserveError,
)


def normal(*shape: int, seed: int = 0) -> Any:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


async def test_every_method(server: Server) -> None:
    a, b = normal(8, 16, seed=30), normal(8, 16, seed=31)
    async with AsyncClient(server.url) as client:
        ref.assert_pairwise(await client.pairwise(a, b, metric="manhattan"), "manhattan", a, b)
        ref.assert_pairwise(await client.pairwise(pairs=np.stack([a, b], 1)), "cosine", a, b)
        ref.assert_matrix(await client.matrix(a.astype(np.float64), b), "cosine", a, b)
        sets = normal(4, 5, 16, seed=32)
        per_set = await client.matrix(sets, metric="euclidean")
        assert per_set.shape == (4, 5, 5)
        for s in range(4):
            ref.assert_matrix(per_set[s], "euclidean", sets[s], sets[s])
        top = await client.matrix(a, b, top_k=3, metric="dot")
        want = ref.neighbours("dot", a, b, top_k=3)
        ref.assert_neighbours(top.indices, top.scores, want, "dot", a, b)
        near = await client.matrix(a, b, threshold=0.3)
        want = ref.neighbours("cosine", a, b, threshold=0.3)
        ref.assert_neighbours(near.indices, near.scores, want, "cosine", a, b)
        pairs = [[0, 7], [3, 3], [7, 0]]
        got = await client.user_item(a.tolist(), b, pairs=pairs)
        ref.assert_pairwise(got, "cosine", a[[0, 3, 7]], b[[7, 3, 0]])
        exclude = [[i] for i in range(8)]
        recs = await client.user_item(a, b, top_k=2, exclude=exclude, item_ids=list("abcdefgh"))
        assert isinstance(recs, Neighbours)
        want = ref.neighbours("cosine", a, b, top_k=2, exclude=exclude)
        ref.assert_neighbours(recs.indices, recs.scores, want, "cosine", a, b)
        assert recs.ids == [["abcdefgh"[i] for i in row] for row in want]
        ref.assert_matrix(await client.user_item(a, b), "cosine", a, b)


async def test_problem_and_connection_errors(server: Server) -> None:
    async with AsyncClient(server.url) as client:
        with pytest.raises(ProblemError) as caught:
            await client.matrix(normal(2, 3), normal(2, 5))
        assert caught.value.status == 422 and caught.value.request_id
        with pytest.raises(ValueError, match=r"^a\[1\]"):
            await client.pairwise([[1.0, 2.0], [1.0]], [[1.0, 2.0], [3.0, 4.0]])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}") as nobody:
        with pytest.raises(SimserveConnectionError) as refused:
            await nobody.matrix([[1.0]])
    assert isinstance(refused.value.__cause__, httpx.ConnectError)


async def test_fifty_concurrent_requests(server: Server) -> None:
    """50 requests in flight at once (the server's queue holds them all); each answer must be
    its own request's, so inputs differ per request and half go to each route."""
    inputs = [(normal(6, 32, seed=100 + i), normal(6, 32, seed=200 + i)) for i in range(50)]
    async with AsyncClient(server.url, retries=0) as client:
        answers = await asyncio.gather(
            *(
                client.matrix(a, b, metric="euclidean") if i % 2 else client.pairwise(a, b)
                for i, (a, b) in enumerate(inputs)
            )
        )
    for i, (a, b) in enumerate(inputs):
        if i % 2:
            ref.assert_matrix(answers[i], "euclidean", a, b)
        else:
            ref.assert_pairwise(answers[i], "cosine", a, b)


async def test_overloaded_after_retries_then_a_retry_succeeds(saturable: Server) -> None:
    held = HeldRequest(saturable)
    refused = saturable.refused()
    try:
        async with AsyncClient(saturable.url, retries=1) as client:
            with pytest.raises(OverloadedError) as caught:
                await client.matrix([[1.0, 0.0]])
        assert caught.value.retry_after == 1.0
        assert saturable.refused() - refused == 2, "one try and one retry"
    except BaseException:
        held.release()
        raise

    def release_after_a_refusal() -> int:
        before = saturable.refused()
        deadline = time.monotonic() + 30
        while saturable.refused() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        return held.release()

    async with AsyncClient(saturable.url, retries=8) as client:
        got, busy = await asyncio.gather(
            client.matrix([[1.0, 0.0], [0.0, 1.0]]), asyncio.to_thread(release_after_a_refusal)
        )
    np.testing.assert_array_equal(got, np.eye(2, dtype=np.float32))
    assert busy == 200


async def test_refusals_and_a_closed_client(server: Server) -> None:
    async with AsyncClient(server.url) as client:
        with pytest.raises(ValueError, match=r"^threshold: expected a finite number"):
            await client.matrix([[1.0]], threshold=float("inf"))
        with pytest.raises(ValueError, match=r"^pairs\[0\]\[1\]: expected an integer"):
            await client.user_item([[1.0]], [[1.0]], pairs=[[0, 0.5]])
        with pytest.raises(ValueError, match=r"^a: cannot send an array of dtype complex"):
            await client.matrix(np.ones((1, 2), dtype=np.complex64))
    with pytest.raises(ClientClosedError):
        await client.matrix([[1.0]])
    with pytest.raises(SimserveError, match="closed"):
        await client.tables()
