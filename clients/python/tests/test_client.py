"""The blocking client against a real simserve: every method against numpy, every error."""

from __future__ import annotations

import multiprocessing
import pickle
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import reference as ref
from conftest import API_KEY
from servers import HeldRequest, Server

from simserve_client import (
    Client,
    ClientClosedError,
    Metric,
    Neighbours,
    OverloadedError,
    ProblemError,
    SimserveConnectionError,
    SimserveError,
)
from simserve_client.errors import OVERLOADED

METRICS: list[Metric] = ["cosine", "dot", "euclidean", "manhattan"]


def normal(*shape: int, seed: int = 0) -> Any:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# pairwise


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_rows(client: Client, metric: Metric) -> None:
    a, b = normal(9, 16, seed=1), normal(9, 16, seed=2)
    ref.assert_pairwise(client.pairwise(a, b, metric=metric), metric, a, b)


def test_pairwise_one_row_against_many(client: Client) -> None:
    a, b = normal(1, 16, seed=3), normal(5, 16, seed=4)
    ref.assert_pairwise(client.pairwise(a, b), "cosine", a, b)


def test_pairwise_pairs_layout_the_articles_lambda_layer(client: Client) -> None:
    embeddings = normal(10, 2, 128, seed=5)  # (batch, 2, dim)
    scores = client.pairwise(pairs=embeddings)
    assert scores.shape == (10,)
    ref.assert_pairwise(scores, "cosine", embeddings[:, 0], embeddings[:, 1])
    readme = [[[0.1, 0.3, 0.5], [0.2, 0.3, 0.4]], [[1, 0, -1], [1, 0, 1]]]
    np.testing.assert_array_equal(
        client.pairwise(pairs=readme), np.array([0.97303545, 0.0], dtype=np.float32)
    )


def test_float64_and_list_inputs(client: Client) -> None:
    a64 = np.random.default_rng(6).standard_normal((4, 8))  # float64
    b_list = normal(4, 8, seed=7).tolist()
    ref.assert_pairwise(client.pairwise(a64, b_list, metric="dot"), "dot", a64, b_list)
    as_f32 = client.pairwise(a64.astype(np.float32), np.array(b_list, np.float32), metric="dot")
    np.testing.assert_array_equal(client.pairwise(a64, b_list, metric="dot"), as_f32)
    ints = client.matrix([[1, 0], [0, 2]], [[3, 4]], metric="euclidean")
    ref.assert_matrix(ints, "euclidean", [[1, 0], [0, 2]], [[3, 4]])
    f16 = normal(3, 8, seed=8).astype(np.float16)
    ref.assert_matrix(client.matrix(f16), "cosine", f16, f16)


def test_pairwise_needs_a_and_b_or_pairs(client: Client) -> None:
    with pytest.raises(ValueError, match="give both a and b, or pairs"):
        client.pairwise(normal(2, 3))
    with pytest.raises(ValueError, match="not both"):
        client.pairwise(normal(2, 3), normal(2, 3), pairs=normal(2, 2, 3))


# matrix


@pytest.mark.parametrize("metric", METRICS)
def test_matrix_a_against_b_and_itself(client: Client, metric: Metric) -> None:
    a, b = normal(7, 16, seed=10), normal(5, 16, seed=11)
    ref.assert_matrix(client.matrix(a, b, metric=metric), metric, a, b)
    itself = client.matrix(a, metric=metric)
    ref.assert_matrix(itself, metric, a, a)
    if metric == "cosine":
        np.testing.assert_array_equal(np.diag(itself), np.ones(7, np.float32))


def test_matrix_per_set_the_articles_custom_layer(client: Client) -> None:
    sets = normal(5, 10, 128, seed=12)  # (B, N, D)
    got = client.matrix(sets)
    assert got.shape == (5, 10, 10) and got.dtype == np.float32
    for s in range(5):
        ref.assert_matrix(got[s], "cosine", sets[s], sets[s])
    others = normal(5, 4, 128, seed=13)
    against = client.matrix(sets, others, metric="manhattan")
    assert against.shape == (5, 10, 4)
    for s in range(5):
        ref.assert_matrix(against[s], "manhattan", sets[s], others[s])


@pytest.mark.parametrize("metric", METRICS)
def test_matrix_top_k(client: Client, metric: Metric) -> None:
    a, b = normal(12, 16, seed=14), normal(30, 16, seed=15)
    got = client.matrix(a, b, metric=metric, top_k=4)
    assert isinstance(got, Neighbours) and not got.ragged
    assert isinstance(got.indices, np.ndarray) and got.indices.shape == (12, 4)
    assert isinstance(got.scores, np.ndarray) and got.scores.shape == (12, 4)
    assert got.metric == metric and got.ids is None
    want = ref.neighbours(metric, a, b, top_k=4)
    ref.assert_neighbours(got.indices, got.scores, want, metric, a, b)


def test_matrix_top_k_exclude_self(client: Client) -> None:
    a = normal(10, 8, seed=16)
    got = client.matrix(a, top_k=3, exclude_self=True)
    want = ref.neighbours("cosine", a, a, top_k=3, exclude=[[r] for r in range(10)])
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", a, a)
    readme = client.matrix([[1, 0], [0.6, 0.8], [0, 1], [0.8, 0.6]], top_k=2, exclude_self=True)
    np.testing.assert_array_equal(readme.indices, [[3, 1], [3, 2], [1, 3], [1, 0]])


def test_matrix_threshold_is_ragged(client: Client) -> None:
    a, b = normal(20, 4, seed=17), normal(25, 4, seed=18)
    got = client.matrix(a, b, threshold=0.5)
    assert got.ragged and isinstance(got.indices, list) and isinstance(got.scores, list)
    want = ref.neighbours("cosine", a, b, threshold=0.5)
    assert len({len(row) for row in want}) > 1, "the data should give rows of differing length"
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", a, b)
    near = client.matrix(a, b, metric="euclidean", threshold=1.5, top_k=3)
    want = ref.neighbours("euclidean", a, b, threshold=1.5, top_k=3)
    ref.assert_neighbours(near.indices, near.scores, want, "euclidean", a, b)


def test_matrix_threshold_per_set_is_ragged(client: Client) -> None:
    sets = normal(3, 6, 4, seed=19)
    got = client.matrix(sets, threshold=0.3, exclude_self=True)
    assert got.ragged and len(got.indices) == 3
    for s in range(3):
        rows, scores = got.indices[s], got.scores[s]
        assert isinstance(rows, list) and isinstance(scores, list)
        exclude = [[r] for r in range(6)]
        want = ref.neighbours("cosine", sets[s], sets[s], threshold=0.3, exclude=exclude)
        ref.assert_neighbours(rows, scores, want, "cosine", sets[s], sets[s])


# user-item


def test_user_item_pairs_the_articles_recommender(client: Client) -> None:
    users, items = normal(100, 64, seed=20), normal(500, 64, seed=21)
    rng = np.random.default_rng(22)
    pairs = np.stack([rng.integers(0, 100, 40), rng.integers(0, 500, 40)], axis=1)
    got = client.user_item(users, items, pairs=pairs)
    ref.assert_pairwise(got, "cosine", users[pairs[:, 0]], items[pairs[:, 1]])
    readme = client.user_item(
        [[0.1, 0.9], [0.8, 0.2], [0.5, 0.5], [1, 0]],
        [[1, 0], [0, 1], [0.7, 0.7]],
        pairs=[[1, 0], [2, 2], [3, 1]],
    )
    np.testing.assert_array_equal(readme, np.array([0.9701425, 1.0, 0.0], dtype=np.float32))


def test_user_item_top_k_exclude_ids(client: Client) -> None:
    users, items = normal(6, 8, seed=23), normal(15, 8, seed=24)
    exclude = [[0, 1], [], [14], [3, 4, 5], [], [7]]
    item_ids = [f"sku-{i}" for i in range(15)]
    got = client.user_item(users, items, top_k=5, exclude=exclude, item_ids=item_ids)
    want = ref.neighbours("cosine", users, items, top_k=5, exclude=exclude)
    assert not got.ragged
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", users, items)
    assert got.ids == [[item_ids[i] for i in row] for row in want]
    readme = client.user_item(
        [[0.1, 0.9], [0.8, 0.2]],
        [[1, 0], [0, 1], [0.7, 0.7]],
        top_k=2,
        exclude=[[1], []],
        item_ids=["sku-1", "sku-2", "sku-3"],
    )
    assert readme.ids == [["sku-3", "sku-1"], ["sku-1", "sku-3"]]


def test_user_item_ragged_when_exclusions_leave_fewer_than_k(client: Client) -> None:
    users, items = normal(3, 8, seed=25), normal(4, 8, seed=26)
    exclude = [[0, 1, 2], [], [1]]
    got = client.user_item(users, items, top_k=3, exclude=exclude, item_ids=list("wxyz"))
    assert got.ragged and [len(r) for r in got.indices] == [1, 3, 3]
    want = ref.neighbours("cosine", users, items, top_k=3, exclude=exclude)
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", users, items)
    assert got.ids == [["wxyz"[i] for i in row] for row in want]


def test_user_item_threshold_and_full_matrix(client: Client) -> None:
    users, items = normal(5, 8, seed=27), normal(9, 8, seed=28)
    got = client.user_item(users, items, threshold=0.2, metric="dot")
    want = ref.neighbours("dot", users, items, threshold=0.2)
    ref.assert_neighbours(got.indices, got.scores, want, "dot", users, items)
    ref.assert_matrix(client.user_item(users, items), "cosine", users, items)


# errors


def test_ragged_nested_lists_are_refused_before_sending(server: Server, client: Client) -> None:
    answered = 'simserve_http_requests_total{method="POST",route="/similarity/matrix",status="200"}'
    before = server.metric(answered)
    with pytest.raises(ValueError, match=r"^a\[1\]: row has 1 values, expected 2"):
        client.matrix([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match=r"^b\[0\]\[1\]: row has 1 values, expected 2"):
        client.matrix([[[1.0, 2.0]]], [[[1.0, 2.0], [3.0]]])
    assert server.metric(answered) == before


def test_invalid_request_is_a_problem_naming_the_row(client: Client) -> None:
    a = np.array([[1.0, 0.0], [np.nan, 1.0]], dtype=np.float32)
    with pytest.raises(ProblemError) as caught:
        client.pairwise(a, a)
    problem = caught.value
    assert type(problem) is ProblemError
    assert problem.status == 422 and problem.title == "Unprocessable Entity"
    assert problem.type == "urn:simserve:problem:invalid-request"
    assert problem.detail.startswith("a[1][0]: ")
    assert problem.request_id and problem.request_id in str(problem)
    with pytest.raises(ProblemError, match="dimension") as caught:
        client.matrix(normal(2, 3), normal(2, 4))
    assert caught.value.detail.startswith("b")
    with pytest.raises(ProblemError, match=r"pairs\[0\]\[1\]"):
        client.user_item(normal(1, 2), normal(3, 2), pairs=[[0, 5]])


def test_unauthorized_without_the_key(auth_server: Server) -> None:
    a = normal(2, 3)
    for key in (None, "wrong-key"):
        with Client(auth_server.url, api_key=key) as anonymous, pytest.raises(ProblemError) as e:
            anonymous.matrix(a)
        assert e.value.status == 401 and e.value.type == "urn:simserve:problem:unauthorized"
    with Client(auth_server.url, api_key=API_KEY) as allowed:
        ref.assert_matrix(allowed.matrix(a), "cosine", a, a)


def test_connection_refused_is_wrapped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.
    with (
        Client(f"http://127.0.0.1:{port}") as nobody,
        pytest.raises(SimserveConnectionError, match="ConnectError") as caught,
    ):
        nobody.pairwise([[1.0]], [[1.0]])
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert f"127.0.0.1:{port}/similarity/pairwise" in str(caught.value)


def test_connection_errors_are_not_retried() -> None:
    accepted = 0
    done = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)

        def accept_and_hang_up() -> None:
            nonlocal accepted
            while not done.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                accepted += 1
                connection.close()

        hanging_up = threading.Thread(target=accept_and_hang_up)
        hanging_up.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        try:
            with Client(url, retries=2) as client, pytest.raises(SimserveConnectionError):
                client.pairwise([[1.0]], [[1.0]])
        finally:
            done.set()
            hanging_up.join()
    assert accepted == 1, f"{accepted} connections for one call"


def test_timeout_is_wrapped() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(url, timeout=0.3) as client, pytest.raises(SimserveConnectionError) as e:
            client.matrix([[1.0]])
    assert isinstance(e.value.__cause__, httpx.ReadTimeout)


def test_overloaded_after_retries(saturable: Server) -> None:
    held = HeldRequest(saturable)
    try:
        refused = saturable.refused()
        with Client(saturable.url, retries=2) as client:
            begun = time.monotonic()
            with pytest.raises(OverloadedError) as caught:
                client.pairwise([[1.0, 2.0]], [[2.0, 1.0]])
            waited = time.monotonic() - begun
        overloaded = caught.value
        assert overloaded.status == 503 and overloaded.type == "urn:simserve:problem:overloaded"
        assert overloaded.retry_after == 1.0 and overloaded.request_id
        assert saturable.refused() - refused == 3, "one try and two retries"
        assert waited >= 2 * overloaded.retry_after, "each retry waits Retry-After"
    finally:
        assert held.release() == 200


def test_retry_succeeds_once_the_permit_frees(saturable: Server) -> None:
    held = HeldRequest(saturable)
    refused = saturable.refused()
    busy: list[int] = []

    def release_after_a_refusal() -> None:
        deadline = time.monotonic() + 30
        while saturable.refused() == refused and time.monotonic() < deadline:
            time.sleep(0.01)
        busy.append(held.release())  # the large computation then holds the permit, and ends

    releaser = threading.Thread(target=release_after_a_refusal)
    releaser.start()
    try:
        with Client(saturable.url, retries=8) as client:
            got = client.pairwise([[1.0, 2.0]], [[2.0, 1.0]], metric="dot")
    finally:
        releaser.join()
    np.testing.assert_array_equal(got, np.array([4.0], dtype=np.float32))
    assert busy == [200]
    assert saturable.refused() > refused


def test_gateway_answers_that_are_not_problem_json() -> None:
    from simserve_client.errors import parse_retry_after, problem_from_response

    request = httpx.Request("POST", "http://gateway/similarity/matrix")
    page = "<html>busy</html>"
    busy = httpx.Response(503, headers={"retry-after": "3"}, text=page, request=request)
    problem = problem_from_response(busy)
    assert isinstance(problem, OverloadedError) and problem.retry_after == 3.0
    assert problem.type == "about:blank" and problem.detail == page
    bad_gateway = problem_from_response(httpx.Response(502, text="upstream gone", request=request))
    assert type(bad_gateway) is ProblemError and bad_gateway.status == 502
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


# arguments refused before sending


def test_indices_that_are_not_integers_are_refused_before_sending(
    server: Server, client: Client
) -> None:
    answered = 'simserve_http_requests_total{method="POST",route="/similarity/user-item"'
    before = sum(server.metric(f'{answered},status="{s}"}}') for s in (200, 422))
    users, items = normal(2, 4, seed=60), normal(3, 4, seed=61)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"pairs": [[0.7, 0]]}, r"^pairs\[0\]\[0\]: expected an integer, found 0.7 \(float\)"),
        ({"pairs": [[0, 1], [1, 2.0]]}, r"^pairs\[1\]\[1\]: expected an integer, found 2.0"),
        ({"pairs": [[True, 0]]}, r"^pairs\[0\]\[0\]: expected an integer, found True"),
        ({"pairs": np.array([[0.0, 1.0]])}, r"^pairs\[0\]\[0\]: expected an integer"),
        ({"pairs": ["01"]}, r"^pairs\[0\]: expected a list, found the string '01'"),
        ({"top_k": 2.9}, r"^top_k: expected an integer, found 2.9"),
        ({"top_k": True}, r"^top_k: expected an integer, found True"),
        ({"top_k": np.float32(2)}, r"^top_k: expected an integer"),
        ({"top_k": 2, "exclude": [[0.5], []]}, r"^exclude\[0\]\[0\]: expected an integer"),
        ({"top_k": 2, "exclude": [[], [np.True_]]}, r"^exclude\[1\]\[0\]: expected an integer"),
        ({"top_k": 2, "exclude": ["i3", []]}, r"^exclude\[0\]: expected a list, found the str"),
        ({"threshold": float("nan")}, r"^threshold: expected a finite number, found nan"),
        ({"threshold": float("inf")}, r"^threshold: expected a finite number, found inf"),
        ({"threshold": np.float64("-inf")}, r"^threshold: expected a finite number"),
        ({"threshold": "0.5"}, r"^threshold: expected a number, found '0.5'"),
        ({"threshold": True}, r"^threshold: expected a number, found True"),
    ]
    for arguments, message in refused:
        with pytest.raises(ValueError, match=message):
            client.user_item(users, items, **arguments)
    fractional: Any = 2.9  # what the annotations refuse, as code without them might pass
    with pytest.raises(ValueError, match=r"^top_k: expected an integer, found 2.9"):
        client.matrix(users, top_k=fractional)
    with pytest.raises(ValueError, match=r"^threshold: expected a finite number, found nan"):
        client.matrix(users, threshold=float("nan"))
    assert sum(server.metric(f'{answered},status="{s}"}}') for s in (200, 422)) == before
    # Python and numpy integers are taken.
    pairs = np.array([[0, 2], [1, 0]], dtype=np.int32)
    got = client.user_item(users, items, pairs=[(np.int64(0), 2), [1, np.uint8(0)]])
    np.testing.assert_array_equal(got, client.user_item(users, items, pairs=pairs))
    ref.assert_pairwise(got, "cosine", users[[0, 1]], items[[2, 0]])
    exclude: list[Any] = [np.array([1], dtype=np.int16), (np.int64(0), 2)]
    recs = client.user_item(users, items, top_k=np.int64(2), exclude=exclude)
    want = ref.neighbours("cosine", users, items, top_k=2, exclude=[[1], [0, 2]])
    ref.assert_neighbours(recs.indices, recs.scores, want, "cosine", users, items)
    assert sum(server.metric(f'{answered},status="{s}"}}') for s in (200, 422)) == before + 3


def test_arrays_that_are_not_real_numbers_are_refused_naming_the_argument(
    client: Client,
) -> None:
    with pytest.raises(ValueError, match=r"^a: cannot send an array of dtype complex128"):
        client.matrix(np.ones((2, 2), dtype=complex))
    with pytest.raises(ValueError, match=r"^b: cannot send an array of dtype <U1"):
        client.pairwise([[1.0]], [["x"]])
    with pytest.raises(ValueError, match=r"^pairs: cannot send an array of dtype"):
        client.pairwise(pairs=np.array([[[1, 2], [3, 4]]], dtype="datetime64[s]"))


def test_a_closed_client_raises_its_own_error(server: Server) -> None:
    closed = Client(server.url)
    closed.close()
    with pytest.raises(ClientClosedError, match="closed") as caught:
        closed.matrix([[1.0]])
    assert isinstance(caught.value, SimserveError) and isinstance(caught.value, RuntimeError)
    with Client(server.url) as client:
        client.tables()
    with pytest.raises(ClientClosedError):
        client.tables()


# errors pickle, so they cross process boundaries


def test_every_error_pickles_with_its_fields() -> None:
    errors: list[SimserveError] = [
        SimserveError("unexpected 200 answer"),
        SimserveConnectionError("POST http://x/similarity/matrix failed: ReadTimeout"),
        ClientClosedError("GET /tables: the client is closed"),
        ProblemError(422, "urn:simserve:problem:invalid-request", "Unprocessable", "a[1]", "r1"),
        ProblemError(502, "about:blank", "Bad Gateway", "upstream gone", None),
        OverloadedError(503, OVERLOADED, "Service Unavailable", "queue full", "r2", 1.0),
        OverloadedError(503, "about:blank", "Service Unavailable", "", None, None),
    ]
    for error in errors:
        vars(error)["note"] = "attributes set later travel too"
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.args == error.args and str(copy) == str(error)
        assert vars(copy) == vars(error), type(error).__name__
    overloaded = pickle.loads(pickle.dumps(errors[-2]))
    assert isinstance(overloaded, OverloadedError)
    assert (overloaded.status, overloaded.type, overloaded.detail) == (
        503,
        OVERLOADED,
        "queue full",
    )
    assert (overloaded.request_id, overloaded.retry_after) == ("r2", 1.0)


def invalid_matrix_in_a_worker(url: str) -> None:
    """Run in another process: a request the server refuses with 422."""
    with Client(url) as client:
        client.matrix([[1.0, 0.0], [float("nan"), 1.0]])


def test_an_error_raised_in_a_worker_process_reaches_the_caller(server: Server) -> None:
    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool,
        pytest.raises(ProblemError) as caught,
    ):
        pool.submit(invalid_matrix_in_a_worker, server.url).result(timeout=60)
    problem = caught.value
    assert type(problem) is ProblemError and problem.status == 422
    assert problem.type == "urn:simserve:problem:invalid-request"
    assert problem.detail.startswith("a[1][0]: ") and problem.request_id
