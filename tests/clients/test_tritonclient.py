"""The real `tritonclient[http]` (pinned in requirements-tritonclient.txt) against a simserve
binary ($SIMSERVE_BIN, else target/release/simserve): server and model metadata, health,
every model in JSON and in binary form with answers equal to the native routes', tables,
compression, and each bad input's status.

Run: SIMSERVE_BIN=target/release/simserve pytest tests/clients/test_tritonclient.py
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

REPO = Path(__file__).resolve().parents[2]
TABLES = REPO / "tests" / "fixtures" / "tables" / "good"


def simserve_bin() -> Path:
    given = os.environ.get("SIMSERVE_BIN")
    return Path(given).resolve() if given else REPO / "target" / "release" / "simserve"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """simserve with the test tables on a free loopback port, read back from its log."""
    scratch = tempfile.mkdtemp(prefix="simserve-triton-")
    log = Path(scratch) / "stderr.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(simserve_bin()), "--addr", "127.0.0.1:0", "--log-format", "json",
             "--log", "warn,simserve::server=info", "--tables", str(TABLES)],
            stdout=subprocess.DEVNULL, stderr=sink)
    try:
        address = None
        deadline = time.monotonic() + 20
        while address is None and time.monotonic() < deadline:
            for line in log.read_text(errors="replace").splitlines():
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == "simserve listening":
                    address = str(fields["addr"])
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.02)
        assert address is not None, log.read_text(errors="replace")
        client = triton.InferenceServerClient(address)
        while not client.is_server_ready():
            assert time.monotonic() < deadline, "simserve did not get ready"
            time.sleep(0.05)
        client.close()
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def client(address: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(address) as c:
        yield c


def native(address: str, route: str, body: dict) -> dict:
    """The native route's JSON answer to `body`."""
    request = urllib.request.Request(
        f"http://{address}/similarity/{route}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def tensor(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    datatype = {np.float32: "FP32", np.float64: "FP64", np.float16: "FP16",
                np.int64: "INT64", np.object_: "BYTES"}[array.dtype.type]
    return triton.InferInput(name, list(array.shape), datatype).set_data_from_numpy(
        array, binary_data=binary)


def infer(client: triton.InferenceServerClient, model: str, inputs: list, outputs: list[str],
          binary: bool, **parameters: object) -> triton.InferResult:
    wanted = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer(model, inputs, outputs=wanted, parameters=parameters or None)


def rows(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def flat(lists: list[list]) -> np.ndarray:
    return np.array([v for row in lists for v in row])


def offsets(lists: list[list]) -> np.ndarray:
    return np.cumsum([0] + [len(row) for row in lists])


def test_metadata_and_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "simserve"
    assert "binary_tensor_data" in server["extensions"]
    for model in ["pairwise", "matrix", "user-item"]:
        assert client.is_model_ready(model)
        assert client.is_model_ready(model, model_version="1")
        metadata = client.get_model_metadata(model, model_version="1")
        assert metadata["name"] == model
        assert all(-1 in spec["shape"] for spec in metadata["inputs"])
    inputs = [spec["name"] for spec in client.get_model_metadata("matrix")["inputs"]]
    assert inputs == ["a", "b"]
    assert not client.is_model_ready("nope")
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("nope")
    assert raised.value.status() == "404"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_pairwise_equals_the_native_route(
        client: triton.InferenceServerClient, address: str, binary: bool) -> None:
    a, b = rows(8, 16, 1), rows(8, 16, 2)
    want = native(address, "pairwise", {"a": a.tolist(), "b": b.tolist(), "metric": "dot"})
    got = infer(client, "pairwise", [tensor("a", a, binary), tensor("b", b, binary)],
                ["scores"], binary, metric="dot")
    np.testing.assert_array_equal(got.as_numpy("scores"), np.array(want["scores"], np.float32))
    assert got.get_response()["parameters"]["metric"] == "dot"

    pairs = np.stack([a, b], axis=1)
    got = infer(client, "pairwise", [tensor("pairs", pairs, binary)], ["scores"], binary,
                metric="dot")
    np.testing.assert_array_equal(got.as_numpy("scores"), np.array(want["scores"], np.float32))


def test_a_large_json_request_equals_the_native_route_and_numpy(
        client: triton.InferenceServerClient, address: str) -> None:
    # About 4 MB of JSON data each way: the inputs' data arrays are cut out of the request's
    # JSON before the rest is parsed, and the answer's matrix is written in pieces.
    a, b = rows(400, 256, 7), rows(300, 256, 8)
    got = infer(client, "matrix", [tensor("a", a, False), tensor("b", b, False)],
                ["matrix"], False).as_numpy("matrix")
    want = native(address, "matrix", {"a": a.tolist(), "b": b.tolist()})
    np.testing.assert_array_equal(got, np.array(want["matrix"], np.float32))
    x = a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=1, keepdims=True)
    y = b.astype(np.float64) / np.linalg.norm(b.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(got, x @ y.T, rtol=0, atol=2e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_matrix_equals_the_native_route(
        client: triton.InferenceServerClient, address: str, binary: bool) -> None:
    a, b = rows(12, 8, 3), rows(7, 8, 4)
    want = native(address, "matrix", {"a": a.tolist(), "b": b.tolist()})
    got = infer(client, "matrix", [tensor("a", a, binary), tensor("b", b, binary)],
                ["matrix"], binary)
    np.testing.assert_array_equal(got.as_numpy("matrix"), np.array(want["matrix"], np.float32))

    sets = np.stack([rows(5, 4, 5), rows(5, 4, 6)])
    want = native(address, "matrix", {"a": sets.tolist(), "metric": "euclidean"})
    got = infer(client, "matrix", [tensor("a", sets, binary)], ["matrix"], binary,
                metric="euclidean")
    np.testing.assert_array_equal(got.as_numpy("matrix"), np.array(want["matrix"], np.float32))

    want = native(address, "matrix", {"a": a.tolist(), "top_k": 3, "exclude_self": True})
    got = infer(client, "matrix", [tensor("a", a, binary)], ["indices", "scores", "offsets"],
                binary, top_k=3, exclude_self=True)
    np.testing.assert_array_equal(got.as_numpy("indices"), np.array(want["indices"]))
    np.testing.assert_array_equal(got.as_numpy("scores"), np.array(want["scores"], np.float32))
    np.testing.assert_array_equal(got.as_numpy("offsets"), np.arange(0, 12 * 3 + 1, 3))

    # Ragged: flat indices and scores, row r at offsets[r]..offsets[r + 1].
    want = native(address, "matrix", {"a": a.tolist(), "b": b.tolist(), "threshold": 0.2})
    got = infer(client, "matrix", [tensor("a", a, binary), tensor("b", b, binary)],
                ["indices", "scores", "offsets"], binary, threshold=0.2)
    lists = want["indices"]
    assert len({len(row) for row in lists}) > 1, "the threshold should give ragged rows"
    np.testing.assert_array_equal(got.as_numpy("indices"), flat(lists))
    np.testing.assert_array_equal(got.as_numpy("scores"),
                                  flat(want["scores"]).astype(np.float32))
    np.testing.assert_array_equal(got.as_numpy("offsets"), offsets(lists))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_user_item_equals_the_native_route(
        client: triton.InferenceServerClient, address: str, binary: bool) -> None:
    users, items = rows(4, 6, 7), rows(9, 6, 8)
    vectors = [tensor("users", users, binary), tensor("items", items, binary)]
    body = {"users": users.tolist(), "items": items.tolist()}

    pairs = np.array([[0, 8], [3, 1], [2, 2]], dtype=np.int64)
    want = native(address, "user-item", {**body, "pairs": pairs.tolist()})
    got = infer(client, "user-item", [*vectors, tensor("pairs", pairs, binary)], ["scores"],
                binary)
    np.testing.assert_array_equal(got.as_numpy("scores"), np.array(want["scores"], np.float32))

    want = native(address, "user-item", body)
    got = infer(client, "user-item", vectors, ["matrix"], binary)
    np.testing.assert_array_equal(got.as_numpy("matrix"), np.array(want["matrix"], np.float32))

    exclude = [[1, 2], [], [0], [8, 7, 6]]
    want = native(address, "user-item", {**body, "top_k": 3, "exclude": exclude})
    inputs = [*vectors, tensor("exclude", flat(exclude).astype(np.int64), binary),
              tensor("exclude_offsets", offsets(exclude).astype(np.int64), binary)]
    got = infer(client, "user-item", inputs, ["indices", "scores"], binary, top_k=3)
    np.testing.assert_array_equal(got.as_numpy("indices"), np.array(want["indices"]))
    np.testing.assert_array_equal(got.as_numpy("scores"), np.array(want["scores"], np.float32))


def test_all_outputs_come_in_binary_when_none_are_listed(
        client: triton.InferenceServerClient, address: str) -> None:
    # tritonclient asks for every output in binary (binary_data_output) when none are listed.
    a = rows(6, 4, 9)
    want = native(address, "matrix", {"a": a.tolist(), "top_k": 2})
    got = client.infer("matrix", [tensor("a", a, True)], parameters={"top_k": 2})
    outputs = {o["name"]: o for o in got.get_response()["outputs"]}
    assert set(outputs) == {"indices", "scores", "offsets"}
    assert all("binary_data_size" in o["parameters"] for o in outputs.values())
    np.testing.assert_array_equal(got.as_numpy("indices"), np.array(want["indices"]))


def test_half_and_double_inputs(client: triton.InferenceServerClient, address: str) -> None:
    a = rows(5, 4, 10)
    want = np.array(native(address, "matrix", {"a": a.tolist()})["matrix"], np.float32)
    got = infer(client, "matrix", [tensor("a", a.astype(np.float64), True)], ["matrix"], True)
    np.testing.assert_array_equal(got.as_numpy("matrix"), want)
    got = infer(client, "matrix", [tensor("a", a.astype(np.float16), True)], ["matrix"], True)
    np.testing.assert_allclose(got.as_numpy("matrix"), want, atol=5e-3)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_inputs_may_be_rows_of_server_side_tables(
        client: triton.InferenceServerClient, address: str, binary: bool) -> None:
    want = native(address, "user-item", {"users": {"table": "users", "rows": [4, 0]},
                                         "items": {"table": "items"}, "top_k": 3})
    got = infer(client, "user-item", [tensor("users", np.array([4, 0], np.int64), binary)],
                ["indices", "scores"], binary, users_table="users", items_table="items", top_k=3)
    np.testing.assert_array_equal(got.as_numpy("indices"), np.array(want["indices"]))
    assert got.get_response()["parameters"]["table.items"] == want["tables"]["items"]
    got = infer(client, "user-item", [tensor("users", np.array([4, 0], np.int64), binary)],
                ["ids"], binary, users_table="users", items_table="items", top_k=3)
    ids = [i.decode() if isinstance(i, bytes) else i for i in got.as_numpy("ids").ravel()]
    assert ids == [i for row in want["items"] for i in row]

    ids = np.array([b"sku-003", b"sku-001"], dtype=np.object_)
    want = native(address, "matrix", {"a": {"table": "users", "rows": [1]},
                                      "b": {"table": "items", "ids": ["sku-003", "sku-001"]}})
    got = infer(client, "matrix", [tensor("a", np.array([1], np.int64), binary),
                                   tensor("b", ids, binary)],
                ["matrix"], binary, a_table="users", b_table="items")
    np.testing.assert_array_equal(got.as_numpy("matrix"), np.array(want["matrix"], np.float32))


def test_compressed_requests_and_answers(
        client: triton.InferenceServerClient, address: str) -> None:
    a = rows(40, 16, 11)
    want = np.array(native(address, "matrix", {"a": a.tolist()})["matrix"], np.float32)
    got = client.infer("matrix", [tensor("a", a, True)],
                       outputs=[triton.InferRequestedOutput("matrix", binary_data=True)],
                       request_compression_algorithm="gzip",
                       response_compression_algorithm="gzip")
    np.testing.assert_array_equal(got.as_numpy("matrix"), want)


def status_of(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


def test_bad_inputs_each_get_the_right_4xx(client: triton.InferenceServerClient) -> None:
    a = rows(2, 2, 12)
    ints = triton.InferInput("a", [2, 2], "INT64").set_data_from_numpy(
        np.ones((2, 2), np.int64))
    status, message = status_of(lambda: client.infer("matrix", [ints]))
    assert (status, message) == ("422", "a: datatype INT64 is not taken; send FP32, FP64, "
                                        "FP16 or BF16")

    lying = tensor("a", a, False).set_shape([2, 3])
    status, message = status_of(lambda: client.infer("matrix", [lying]))
    assert status == "422" and message.startswith("a.data: holds 4 values, shape [2, 3] needs 6")
    lying = tensor("a", a, True).set_shape([2, 3])
    status, message = status_of(lambda: client.infer("matrix", [lying]))
    assert (status, message) == ("422", "a: binary_data_size is 16 bytes, shape [2, 3] of FP32 "
                                        "needs 24")

    status, message = status_of(lambda: client.infer("nope", [tensor("a", a, True)]))
    assert status == "404" and message.startswith("there is no model of that name")
    status, message = status_of(lambda: client.infer("matrix", [tensor("c", a, True)]))
    assert status == "422" and message.startswith('inputs[0].name: the model has no input "c"')
    status, message = status_of(
        lambda: client.infer("matrix", [tensor("a", a, True)], parameters={"k": 1}))
    assert (status, message) == ("422", 'parameters: the model matrix takes no parameter "k"')
    b = rows(1, 3, 13)
    status, message = status_of(
        lambda: client.infer("matrix", [tensor("a", a, True), tensor("b", b, True)]))
    assert (status, message) == (
        "422", "b: vectors have dimension 3, but those of a have dimension 2")


def raw_post(address: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/v2/models/matrix/infer", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_broken_binary_framing_gets_400(address: str) -> None:
    data = np.eye(2, dtype=np.float32).tobytes()
    head = json.dumps({"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 20}}]}).encode()
    length = {"Inference-Header-Content-Length": str(len(head))}
    status, body = raw_post(address, head + data, length)
    assert status == 400
    assert body["error"].startswith("a: binary_data_size of 20 bytes runs past the end")

    head = head.replace(b"20", b"16")
    status, body = raw_post(address, head + data + b"\0", {
        "Inference-Header-Content-Length": str(len(head))})
    assert status == 400 and body["error"].startswith("the body holds 1 bytes after the JSON")

    status, body = raw_post(address, head + data, {
        "Inference-Header-Content-Length": str(len(head) + len(data) + 1)})
    assert status == 400
    assert body["error"].startswith("Inference-Header-Content-Length: ")
    assert "is past the end of the body" in body["error"]

    status, body = raw_post(address, head + data, {
        "Inference-Header-Content-Length": str(len(head))})
    assert status == 200, body


def test_the_readme_example_runs(address: str) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = [block.split("```")[0] for block in readme.split("```python\n")[1:]]
    blocks = [block for block in blocks if "tritonclient" in block]
    assert len(blocks) == 1
    code = blocks[0].replace("localhost:8080", address)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["indices"].shape == (1000, 10)
    assert namespace["indices"].dtype == np.int64
    assert namespace["scores"].dtype == np.float32
    assert (np.diff(namespace["scores"], axis=1) <= 0).all()
    namespace["client"].close()
