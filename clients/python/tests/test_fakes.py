"""Both clients against a scripted fake server (tests/fakes.py), for what the real simserve
never does: kept-alive connections closed just as a request arrives (or a second later),
hostile Retry-After values, answers that are not what the API says, batched neighbours
with ids."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fakes import (
    CLOSE,
    RESET,
    FakeServer,
    Reply,
    Request,
    always,
    answer,
    json_answer,
    problem,
)

from simserve_client import (
    AsyncClient,
    Client,
    OverloadedError,
    ProblemError,
    SimserveConnectionError,
    SimserveError,
)
from simserve_client._wire import STALE_CONNECTION_WINDOW, ConnectionWatch
from simserve_client.errors import OVERLOADED, parse_retry_after

SCORES = {"metric": "dot", "shape": [1], "scores": [1.0]}


def scores(value: float) -> bytes:
    return json_answer({"metric": "dot", "shape": [1], "scores": [value]})


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()`'s result (or error), failing the test if it takes longer than `seconds`
    (left running in a daemon thread: a client that waits an hour must not hang the tests)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as err:
            outcome.append(("error", err))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


# A kept-alive connection closed by the server just as the next request goes out: the
# fake reads the request, then closes without a byte of answer (FIN or reset). Closed a
# second later instead, the request must not be sent again: the server may have worked on it.


def closes_first_connection_at_its_second_request(
    how: Reply, after: float = 0.0
) -> Callable[[Request], Reply]:
    """Answers every request but the second on the first connection, which it reads, then
    closes unanswered `after` seconds later."""

    def reply(request: Request) -> Reply:
        if (request.connection, request.number) == (1, 2):
            time.sleep(after)
            return how
        return scores(float(request.connection))

    return reply


LATE = 1.0
"""How long after reading a request the fake closes its connection when that must not be
taken for the keep-alive race: 10 times the window in which it is."""
assert LATE >= 10 * STALE_CONNECTION_WINDOW


@pytest.mark.parametrize("how", [CLOSE, RESET])
def test_a_closed_kept_alive_connection_is_retried_once_on_a_new_one(how: Reply) -> None:
    with (
        FakeServer(closes_first_connection_at_its_second_request(how)) as fake,
        Client(fake.url, retries=0) as client,
    ):
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [1.0]
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [2.0]  # from connection 2
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [3.0]  # the pool's next one
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2), (2, 1), (3, 1)]
    assert fake.requests[1].body == fake.requests[2].body


@pytest.mark.parametrize("how", [CLOSE, RESET])
async def test_async_a_closed_kept_alive_connection_is_retried_once(how: Reply) -> None:
    with FakeServer(closes_first_connection_at_its_second_request(how)) as fake:
        async with AsyncClient(fake.url, retries=0) as client:
            assert (await client.pairwise([[1.0]], [[1.0]])).tolist() == [1.0]
            assert (await client.pairwise([[1.0]], [[1.0]])).tolist() == [2.0]
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2), (2, 1)]


@pytest.mark.parametrize("how", [CLOSE, RESET])
def test_a_kept_alive_connection_closed_long_after_the_request_is_not_retried(
    how: Reply,
) -> None:
    """The server read the request and may have worked on it (killed, shut down, a proxy
    cutting a long request): sending it again would double the work and the wait."""
    with (
        FakeServer(closes_first_connection_at_its_second_request(how, after=LATE)) as fake,
        Client(fake.url, retries=2) as client,
    ):
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [1.0]
        begun = time.monotonic()
        with pytest.raises(SimserveConnectionError) as caught:
            client.pairwise([[1.0]], [[1.0]])
        assert time.monotonic() - begun >= LATE
    assert isinstance(caught.value.__cause__, (httpx.RemoteProtocolError, httpx.ReadError))
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2)]


@pytest.mark.parametrize("how", [CLOSE, RESET])
async def test_async_a_kept_alive_connection_closed_long_after_is_not_retried(
    how: Reply,
) -> None:
    with FakeServer(closes_first_connection_at_its_second_request(how, after=LATE)) as fake:
        async with AsyncClient(fake.url, retries=2) as client:
            assert (await client.pairwise([[1.0]], [[1.0]])).tolist() == [1.0]
            with pytest.raises(SimserveConnectionError):
                await client.pairwise([[1.0]], [[1.0]])
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2)]


def test_retry_stale_connection_false_sends_a_request_once() -> None:
    with (
        FakeServer(closes_first_connection_at_its_second_request(CLOSE)) as fake,
        Client(fake.url, retry_stale_connection=False) as client,
    ):
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [1.0]
        with pytest.raises(SimserveConnectionError, match="RemoteProtocolError"):
            client.pairwise([[1.0]], [[1.0]])
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [2.0]  # on a new connection
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2), (2, 1)]


async def test_async_retry_stale_connection_false_sends_a_request_once() -> None:
    with FakeServer(closes_first_connection_at_its_second_request(CLOSE)) as fake:
        async with AsyncClient(fake.url, retry_stale_connection=False) as client:
            assert (await client.pairwise([[1.0]], [[1.0]])).tolist() == [1.0]
            with pytest.raises(SimserveConnectionError, match="RemoteProtocolError"):
                await client.pairwise([[1.0]], [[1.0]])
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2)]


def test_when_a_failure_counts_as_the_keep_alive_race() -> None:
    """`ConnectionWatch` fed httpcore's trace events (the names of httpcore's http11.py)."""
    lost = httpx.RemoteProtocolError("Server disconnected without sending a response.")

    def watch(*events: str) -> ConnectionWatch:
        watched = ConnectionWatch()
        for name in events:
            watched.event(name, {})
        return watched

    sending = ("http11.send_request_headers.started", "http11.send_request_headers.complete")
    sent = (*sending, "http11.send_request_body.started", "http11.send_request_body.complete")
    failed = (
        "http11.receive_response_headers.started",
        "http11.receive_response_headers.failed",
    )
    # failing while the request is sent (httpcore then still waits for an answer), or just
    # after it was sent, on a reused connection
    assert watch(*sending, "http11.send_request_body.failed", *failed).closed_before_answer(
        httpx.ReadError("reset")
    )
    assert watch(*sent, *failed).closed_before_answer(lost)
    assert watch(*sent).closed_before_answer(httpx.WriteError("broken pipe"))
    # not: long after it was sent, on a new connection, after an answer's head, a timeout
    late = watch(*sent, *failed)
    assert late.sent_at is not None and late.failed_at is not None
    late.sent_at -= 10 * STALE_CONNECTION_WINDOW
    assert not late.closed_before_answer(lost)
    late.failed_at = None  # failed just now, as far as it knows
    assert not late.closed_before_answer(lost)
    assert not watch("connection.connect_tcp.started", *sent, *failed).closed_before_answer(lost)
    assert not watch(*sent, "http11.receive_response_headers.complete").closed_before_answer(
        httpx.ReadError("cut short")
    )
    assert not watch(*sent, *failed).closed_before_answer(httpx.ReadTimeout("slow"))
    assert not watch(*sent, *failed).closed_before_answer(httpx.RemoteProtocolError("bad"))


def only_first_request_answered(request: Request) -> Reply:
    return scores(1.0) if (request.connection, request.number) == (1, 1) else CLOSE


def test_the_retry_on_a_new_connection_happens_once() -> None:
    with FakeServer(only_first_request_answered) as fake, Client(fake.url, retries=5) as client:
        client.pairwise([[1.0]], [[1.0]])
        with pytest.raises(SimserveConnectionError, match="RemoteProtocolError") as caught:
            client.pairwise([[1.0]], [[1.0]])
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    # the kept-alive connection, then one new one, which is not retried again
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2), (2, 1)]


async def test_async_the_retry_on_a_new_connection_happens_once() -> None:
    with FakeServer(only_first_request_answered) as fake:
        async with AsyncClient(fake.url, retries=5) as client:
            await client.pairwise([[1.0]], [[1.0]])
            with pytest.raises(SimserveConnectionError):
                await client.pairwise([[1.0]], [[1.0]])
    assert [(r.connection, r.number) for r in fake.requests] == [(1, 1), (1, 2), (2, 1)]


def test_an_answer_cut_short_on_a_kept_alive_connection_is_not_retried() -> None:
    def reply(request: Request) -> Reply:
        if request.number == 1:
            return scores(1.0)
        return answer(200, b'{"metric":', length=100, close=True)  # head, then part of a body

    with FakeServer(reply) as fake, Client(fake.url) as client:
        client.pairwise([[1.0]], [[1.0]])
        with pytest.raises(SimserveConnectionError):
            client.pairwise([[1.0]], [[1.0]])
    assert len(fake.requests) == 2


# Retry-After


def overloaded_once(retry_after: str) -> Callable[[Request], Reply]:
    """Refuses the first request of each connection for overload, with `retry_after`, and
    answers the next ones."""

    def reply(request: Request) -> Reply:
        if request.number == 1:
            return problem(
                503,
                type=OVERLOADED,
                title="Service Unavailable",
                status=503,
                detail="queue full",
                headers={"retry-after": retry_after},
            )
        return scores(2.0)

    return reply


def test_retry_after_that_is_not_finite_seconds_is_ignored() -> None:
    for value in ("inf", "nan", "-1", "1e3", "9" * 400):
        assert parse_retry_after(value) is None, value
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    later = parse_retry_after(
        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    )
    assert later is not None and 55 < later <= 60

    # Each connection's first request is refused with Retry-After: inf, the next answered.
    with FakeServer(overloaded_once("inf")) as fake, Client(fake.url, retries=1) as client:
        begun = time.monotonic()
        got = within(10, lambda: client.pairwise([[1.0]], [[1.0]]))
        assert got.tolist() == [2.0] and time.monotonic() - begun < 5  # backoff, 0.25 s
    with FakeServer(overloaded_once("inf")) as fake, Client(fake.url, retries=0) as client:
        with pytest.raises(OverloadedError) as caught:
            client.pairwise([[1.0]], [[1.0]])
        assert caught.value.retry_after is None


async def test_async_retry_after_inf_does_not_sleep_forever() -> None:
    with FakeServer(overloaded_once("inf")) as fake:
        async with AsyncClient(fake.url, retries=1) as client:
            got = await asyncio.wait_for(client.pairwise([[1.0]], [[1.0]]), 10)
    assert got.tolist() == [2.0]


def test_a_retry_after_longer_than_max_retry_wait_raises_at_once() -> None:
    with FakeServer(overloaded_once("3600")) as fake, Client(fake.url, timeout=1.0) as client:
        begun = time.monotonic()
        with pytest.raises(OverloadedError) as caught:
            within(10, lambda: client.pairwise([[1.0]], [[1.0]]))
        assert time.monotonic() - begun < 5
    assert caught.value.retry_after == 3600.0 and caught.value.detail == "queue full"
    assert len(fake.requests) == 1
    with (
        FakeServer(overloaded_once("2")) as fake,
        Client(fake.url, max_retry_wait=0.5) as client,
        pytest.raises(OverloadedError),
    ):
        within(10, lambda: client.pairwise([[1.0]], [[1.0]]))
    assert len(fake.requests) == 1
    with FakeServer(overloaded_once("1")) as fake, Client(fake.url, max_retry_wait=5) as client:
        begun = time.monotonic()
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [2.0]
        assert time.monotonic() - begun >= 1.0, "waits the Retry-After within the cap"
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_retry_wait"):
            Client("http://127.0.0.1:1", max_retry_wait=bad)


async def test_async_a_retry_after_longer_than_max_retry_wait_raises_at_once() -> None:
    with FakeServer(overloaded_once("3600")) as fake:
        async with AsyncClient(fake.url) as client:
            with pytest.raises(OverloadedError) as caught:
                await asyncio.wait_for(client.pairwise([[1.0]], [[1.0]]), 10)
    assert caught.value.retry_after == 3600.0 and len(fake.requests) == 1


# Answers that are not what the API says raise SimserveError; error answers ProblemError.

NEIGHBOURS = {"metric": "cosine", "shape": [1, 1], "indices": [[0]], "scores": [[1.0]]}

UNREADABLE: list[tuple[str, bytes]] = [
    ("a string", json_answer("indices are here")),
    ("a list", json_answer([NEIGHBOURS])),
    ("tables a list", json_answer({**NEIGHBOURS, "tables": ["items"]})),
    ("tables not strings", json_answer({**NEIGHBOURS, "tables": {"items": 3}})),
    ("indices a string", json_answer({**NEIGHBOURS, "indices": "0"})),
    ("indices floats", json_answer({**NEIGHBOURS, "indices": [[0.5]]})),
    ("indices negative", json_answer({**NEIGHBOURS, "indices": [[-1]]})),
    ("scores null", json_answer({**NEIGHBOURS, "scores": None})),
    ("scores strings", json_answer({**NEIGHBOURS, "scores": [["1.0"]]})),
    ("shape bad", json_answer({**NEIGHBOURS, "shape": [1, "1"]})),
    ("ids unlike indices", json_answer({**NEIGHBOURS, "ids": [["a", "b"]]})),
    ("ids numbers", json_answer({**NEIGHBOURS, "ids": [[7]]})),
    ("metric a number", json_answer({**NEIGHBOURS, "metric": 1})),
    ("bad base64", json_answer({"matrix": {"dtype": "float32", "shape": [1], "data": "!!"}})),
    ("float64 tensor", json_answer({"matrix": {"dtype": "float64", "shape": [1], "data": ""}})),
    ("deep nesting", answer(200, b"[" * 100_000 + b"]" * 100_000)),
    ("not json", answer(200, b"<html>hello</html>", "text/html")),
    ("bad gzip", answer(200, b"not gzip", headers={"content-encoding": "gzip"})),
]


@pytest.mark.parametrize("body", [b for _, b in UNREADABLE], ids=[n for n, _ in UNREADABLE])
def test_unreadable_answers_raise_simserve_error(body: bytes) -> None:
    with FakeServer(always(body)) as fake, Client(fake.url) as client:
        with pytest.raises(SimserveError) as caught:
            client.matrix([[1.0]], top_k=1)
        assert type(caught.value) is SimserveError
        with pytest.raises(SimserveError):
            client.tables()
        with pytest.raises(SimserveError):
            client.table("items")


async def test_async_unreadable_answers_raise_simserve_error() -> None:
    for _, body in UNREADABLE:
        with FakeServer(always(body)) as fake:
            async with AsyncClient(fake.url) as client:
                with pytest.raises(SimserveError) as caught:
                    await client.matrix([[1.0]], top_k=1)
                assert type(caught.value) is SimserveError


def test_tables_answers_of_the_wrong_shape_raise_simserve_error() -> None:
    info = {
        "name": "items",
        "rows": 3,
        "dim": 2,
        "dtype": "float32",
        "stored_dtype": "float32",
        "ids": False,
        "version": "v1",
        "source": "items.npy",
        "loaded_at": "2026-01-01T00:00:00Z",
        "bytes": 24,
        "last_error": None,
    }
    wrong = [["items"], [[info]], [{**info, "rows": "3"}], [{**info, "ids": "false"}]]
    for entries in wrong:
        with (
            FakeServer(always(json_answer({"tables": entries}))) as fake,
            Client(fake.url) as client,
            pytest.raises(SimserveError),
        ):
            client.tables()
    with FakeServer(always(json_answer({"tables": [info]}))) as fake, Client(fake.url) as client:
        (read,) = client.tables()
    assert (read.name, read.rows, read.ids, read.last_error) == ("items", 3, False, None)


@pytest.mark.parametrize("status", ["abc", None, True, 1000, 422.5])
def test_problem_documents_with_a_bad_status_keep_the_answers(status: Any) -> None:
    def reply(request: Request) -> Reply:
        return problem(422, type="urn:x", title="Bad", status=status, detail=["d"], request_id=1)

    with (
        FakeServer(reply) as fake,
        Client(fake.url) as client,
        pytest.raises(ProblemError) as caught,
    ):
        client.matrix([[1.0]])
    error = caught.value
    assert (error.status, error.type, error.title) == (422, "urn:x", "Bad")
    assert (error.detail, error.request_id) == ("['d']", "1")


def test_gzip_answers_are_read() -> None:
    """The other side of "bad gzip": a well-formed encoded answer is decoded as ever."""
    body = gzip.compress(json.dumps(SCORES).encode())
    with (
        FakeServer(always(answer(200, body, headers={"content-encoding": "gzip"}))) as fake,
        Client(fake.url) as client,
    ):
        assert client.pairwise([[1.0]], [[1.0]]).tolist() == [1.0]


# Neighbours' ids: `ids` for matrix (batched too), `items` for user-item.


def test_matrix_ids_of_batched_answers() -> None:
    dense = {
        "metric": "cosine",
        "shape": [2, 2, 1],
        "indices": [[[1], [0]], [[0], [0]]],
        "scores": [[[0.5], [0.5]], [[1.0], [0.25]]],
        "ids": [[["b"], ["a"]], [["a"], ["a"]]],
        "items": [[["wrong"], ["wrong"]], [["wrong"], ["wrong"]]],  # matrix reads `ids`
    }
    ragged = {
        "metric": "cosine",
        "indices": [[[1], []], [[0, 1], [0]]],
        "scores": [[[0.5], []], [[1.0, 0.5], [0.25]]],
        "ids": [[["b"], []], [["a", "b"], ["a"]]],
    }
    user_item = {**NEIGHBOURS, "items": [["sku-1"]], "ids": [["wrong"]]}
    answers = iter([json_answer(dense), json_answer(ragged), json_answer(user_item)])
    with FakeServer(lambda request: next(answers)) as fake, Client(fake.url) as client:
        got = client.matrix(np.ones((2, 2, 3)), top_k=1)
        assert got.ids == dense["ids"] and isinstance(got.indices, np.ndarray)
        assert got.indices.shape == (2, 2, 1)
        near = client.matrix(np.ones((2, 2, 3)), threshold=0.2)
        assert near.ragged and near.ids == ragged["ids"]
        assert [[row.tolist() for row in rows] for rows in near.indices] == ragged["indices"]
        recs = client.user_item(np.ones((1, 3)), np.ones((2, 3)), top_k=1)
        assert recs.ids == [["sku-1"]], "user-item lists its ids in `items`"
