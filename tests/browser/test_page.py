"""The try-it page at `/`, in headless Chromium against the release binary.

Every answer the page shows is checked against the API's own answer to the same request,
sent directly: the heatmap's pixels against the colour scale, the hover read-out, the top-k
table, the bar strip, downloads. Each test also checks the browser's console: nothing but
the HTTP errors the test provokes on purpose.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import API_KEY, REPO, Server
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

TEST_IDS = [
    "input-a",
    "input-b",
    "metric",
    "operation",
    "top-k",
    "compute",
    "heatmap",
    "result",
    "error",
]

# The page's colour scales (src/api/page/app.js): ColorBrewer RdBu and viridis stops.
STOPS = {
    "diverging": [
        "053061",
        "2166ac",
        "4393c3",
        "92c5de",
        "d1e5f0",
        "f7f7f7",
        "fddbc7",
        "f4a582",
        "d6604d",
        "b2182b",
        "67001f",
    ],
    "sequential": [
        "440154",
        "482878",
        "3e4989",
        "31688e",
        "26828e",
        "1f9e89",
        "35b779",
        "6ece58",
        "b5de2b",
        "fde725",
    ],
}


def expected_rgb(kind: str, lo: float, hi: float, value: float) -> tuple[int, ...]:
    stops = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in STOPS[kind]]
    p = min(1.0, max(0.0, (value - lo) / (hi - lo))) * (len(stops) - 1)
    i = min(len(stops) - 2, math.floor(p))
    f = p - i
    return tuple(
        math.floor(a + (b - a) * f + 0.5) for a, b in zip(stops[i], stops[i + 1], strict=True)
    )


def off(got: tuple[int, ...], want: tuple[int, ...]) -> int:
    """The largest difference between two colours' channels."""
    return max(abs(p - q) for p, q in zip(got, want, strict=True))


# ---- Driving the page.


def by_id(driver: webdriver.Chrome, testid: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def open_page(driver: webdriver.Chrome, server: Server) -> None:
    driver.get(f"{server.url}/")
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.querySelectorAll('#example option').length") > 0
    )


def load_example(driver: webdriver.Chrome, prefix: str) -> None:
    select = Select(by_id(driver, "example"))
    label = next(o.text for o in select.options if o.text.startswith(prefix))
    select.select_by_visible_text(label)
    by_id(driver, "load-example").click()


def set_text(element: WebElement, text: str) -> None:
    element.clear()
    element.send_keys(text)


def compute(driver: webdriver.Chrome) -> None:
    """Clicks Compute and waits for the answer (or the error) to be shown."""
    driver.execute_script("document.getElementById('summary').textContent = ''")
    by_id(driver, "compute").click()
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script(
            "return document.getElementById('summary').textContent !== ''"
            " || !document.getElementById('error').hidden"
        )
    )


def curl_command(driver: webdriver.Chrome) -> str:
    return by_id(driver, "curl").text


def curl_body(driver: webdriver.Chrome) -> dict[str, Any]:
    """The JSON body of the curl command the page shows."""
    words = shlex.split(curl_command(driver).replace("\\\n", " "))
    return json.loads(words[words.index("-d") + 1])


def run_curl(driver: webdriver.Chrome, **env: str) -> Any:
    """Runs the page's curl command in a shell; its JSON answer."""
    done = subprocess.run(
        ["bash", "-c", curl_command(driver)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(done.stdout)


def dataset(driver: webdriver.Chrome, testid: str) -> dict[str, str]:
    return driver.execute_script(
        "const node = document.querySelector(`[data-testid='${arguments[0]}']`);"
        "return Object.assign({}, node.dataset)",
        testid,
    )


def pixels(driver: webdriver.Chrome, points: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """The RGB of the heatmap canvas at each (x, y), in canvas pixels."""
    # Read through a copy, once: the page's own canvas is never read back.
    found = driver.execute_script(
        """const canvas = document.getElementById('heatmap');
        const copy = Object.assign(document.createElement('canvas'),
          { width: canvas.width, height: canvas.height });
        const context = copy.getContext('2d');
        context.drawImage(canvas, 0, 0);
        const { data } = context.getImageData(0, 0, copy.width, copy.height);
        return arguments[0].map(([x, y]) => Array.from(data.subarray((y * copy.width + x) * 4,
          (y * copy.width + x) * 4 + 4)));""",
        [list(p) for p in points],
    )
    return [tuple(rgba[:3]) for rgba in found]


def hover(driver: webdriver.Chrome, x: float, y: float) -> str:
    """Points at canvas pixel (x, y) of the heatmap; the read-out it gives."""
    canvas = by_id(driver, "heatmap")
    box = driver.execute_script(
        "arguments[0].scrollIntoView({block: 'nearest'});"
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.width, r.height, arguments[0].width, arguments[0].height]",
        canvas,
    )
    css_x, css_y = x * box[0] / box[2], y * box[1] / box[3]
    ActionChains(driver).move_to_element_with_offset(
        canvas, round(css_x - box[0] / 2), round(css_y - box[1] / 2)
    ).perform()
    return by_id(driver, "hover").text


CELL = re.compile(r"i = (\d+)(?: \(([^)]*)\))?, j = (\d+)(?: \(([^)]*)\))?, value = (\S+)$")


def console_errors(driver: webdriver.Chrome, *allowed: str) -> list[str]:
    """Console messages of level SEVERE or WARNING since the last call, but those naming
    one of the `allowed` HTTP statuses of the requests a test makes fail on purpose."""
    bad = []
    for entry in driver.get_log("browser"):
        if entry["level"] not in ("SEVERE", "WARNING"):
            continue
        if any(f"status of {status}" in entry["message"] for status in allowed):
            continue
        bad.append(entry["message"])
    return bad


def check_heatmap(
    driver: webdriver.Chrome,
    matrix: np.ndarray,
    names: list[str] | None = None,
    hover_cells: int = 9,
) -> None:
    """The drawn set is `matrix` (n x m): every cell's colour is the scale's colour of the
    API's value, and pointing at cells reads out i, j (and names) and that value."""
    data = dataset(driver, "heatmap")
    legend = dataset(driver, "legend")
    n, m = matrix.shape
    assert (int(data["rows"]), int(data["cols"]), data["stepR"], data["stepC"]) == (n, m, "1", "1")
    cw, ch, x0, y0 = (int(data[k]) for k in ("cellW", "cellH", "x0", "y0"))
    lo, hi = float(legend["lo"]), float(legend["hi"])
    cells = [(i, j) for i in range(n) for j in range(m)]
    got = pixels(driver, [(x0 + j * cw + 2, y0 + i * ch + 2) for i, j in cells])
    for (i, j), rgb in zip(cells, got, strict=True):
        want = expected_rgb(legend["kind"], lo, hi, float(matrix[i, j]))
        assert off(rgb, want) <= 1, (i, j, rgb, want, matrix[i, j])
    step = max(1, len(cells) // hover_cells)
    for i, j in cells[::step]:
        text = hover(driver, x0 + (j + 0.5) * cw, y0 + (i + 0.5) * ch)
        found = CELL.search(text)
        assert found, text
        assert (int(found[1]), int(found[3])) == (i, j), text
        assert np.float32(found[5]) == np.float32(matrix[i, j]), (text, matrix[i, j])
        if names:
            assert (found[2], found[4]) == (names[i], names[j]), text


# ---- The tests.


def test_the_page_loads_offline_under_its_csp_with_every_test_hook(
    driver: webdriver.Chrome, server: Server
) -> None:
    with urllib.request.urlopen(f"{server.url}/") as answer:
        policy = answer.headers["content-security-policy"]
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    open_page(driver, server)
    for testid in TEST_IDS:
        assert driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]'), testid
    # The style sheet applied, every resource came from this origin, nothing was refused.
    colour = by_id(driver, "compute").value_of_css_property("background-color")
    assert colour == "rgba(11, 92, 173, 1)", colour
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert loaded and all(url.startswith(server.url) for url in loaded), loaded
    assert console_errors(driver) == []


def test_an_example_computes_a_heatmap_whose_pixels_and_hover_match_the_api(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    load_example(driver, "A matrix per set: (2, 3, 2)")
    compute(driver)
    body = curl_body(driver)
    assert body == {
        "a": [[[1, 0], [0.6, 0.8], [0, 1]], [[1, 1], [-1, -1], [1, 0]]],
        "metric": "cosine",
    }
    answer = server.post("similarity/matrix", body)
    assert run_curl(driver) == answer
    assert answer["shape"] == [2, 3, 3]
    assert dataset(driver, "legend") == {
        "testid": "legend",
        "kind": "diverging",
        "lo": "-1",
        "hi": "1",
    }
    matrix = np.array(answer["matrix"], dtype=np.float32)
    check_heatmap(driver, matrix[0])
    # Batched sets, one at a time.
    assert "of 2" in driver.find_element(By.ID, "set-count").text
    driver.find_element(By.ID, "set-next").click()
    check_heatmap(driver, matrix[1])
    # A click on a row lists its nearest neighbours, nearest first.
    data = dataset(driver, "heatmap")
    hover(driver, int(data["x0"]) + 10, int(data["y0"]) + 1.5 * int(data["cellH"]))
    ActionChains(driver).click().perform()
    listed = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#neighbours li")]
    order = sorted(range(3), key=lambda j: (-matrix[1, 1, j], j))
    assert [int(re.match(r"j = (\d+)", t)[1]) for t in listed] == order, listed
    assert listed[0].endswith("(itself)")
    # The keyboard: arrows move the read-out, Enter lists the row.
    canvas = by_id(driver, "heatmap")
    canvas.send_keys(Keys.ESCAPE, Keys.ARROW_DOWN)  # the first arrow shows the first cell
    found = CELL.search(by_id(driver, "hover").text)
    assert found and (found[1], found[3]) == ("0", "0"), found
    canvas.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_DOWN, Keys.ARROW_DOWN)
    found = CELL.search(by_id(driver, "hover").text)
    assert found and (found[1], found[3]) == ("2", "1")
    canvas.send_keys(Keys.ENTER)
    assert "Nearest to row 2" in driver.find_element(By.ID, "neighbours").text
    assert console_errors(driver) == []


def test_the_articles_sets_are_drawn_and_the_screenshot_is_taken(
    driver: webdriver.Chrome, server: Server, out_dir: Path
) -> None:
    open_page(driver, server)
    load_example(driver, "A matrix per set: the article's (5, 10, 128)")
    compute(driver)
    answer = server.post("similarity/matrix", curl_body(driver))
    assert answer["shape"] == [5, 10, 10]
    matrix = np.array(answer["matrix"], dtype=np.float32)
    driver.find_element(By.ID, "set").send_keys(Keys.CONTROL, "a", Keys.NULL, "3", Keys.TAB)
    check_heatmap(driver, matrix[2], hover_cells=5)
    data = dataset(driver, "heatmap")
    cw, ch, x0, y0 = (int(data[k]) for k in ("cellW", "cellH", "x0", "y0"))
    hover(driver, x0 + 5.5 * cw, y0 + 2.5 * ch)
    ActionChains(driver).click().perform()
    hover(driver, x0 + 7.5 * cw, y0 + 2.5 * ch)
    assert "set 3: i = 2, j = 7" in by_id(driver, "hover").text
    driver.execute_script("window.scrollTo(0, 0)")
    shot = out_dir / "try-it.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SIMSERVE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "docs" / "try-it.png")
    assert console_errors(driver) == []


def test_top_k_answers_are_shown_as_a_table_of_the_apis_neighbours(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    load_example(driver, "Nearest neighbours")
    assert by_id(driver, "top-k").get_attribute("value") == "2"
    compute(driver)
    body = curl_body(driver)
    assert body["top_k"] == 2 and body["exclude_self"] is True
    answer = server.post("similarity/matrix", body)
    assert by_id(driver, "table").is_displayed() and not by_id(driver, "heatmap").is_displayed()
    rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="table"] tbody tr')
    assert len(rows) == len(answer["indices"])
    for row, indices, scores in zip(rows, answer["indices"], answer["scores"], strict=True):
        cells = row.find_elements(By.TAG_NAME, "td")
        assert [int(c.get_attribute("data-index")) for c in cells] == indices
        got = [np.float32(c.get_attribute("data-score")) for c in cells]
        assert got == [np.float32(s) for s in scores]
    # A threshold gives rows of different lengths; as base64, one tensor per row.
    set_text(by_id(driver, "top-k"), "")
    set_text(by_id(driver, "threshold"), "0.7")
    Select(driver.find_element(By.ID, "encoding")).select_by_value("base64")
    compute(driver)
    body = curl_body(driver)
    assert body["threshold"] == 0.7 and body["response_encoding"] == "base64"
    answer = server.post("similarity/matrix", {**body, "response_encoding": "json"})
    assert len({len(row) for row in answer["indices"]}) > 1, answer
    rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="table"] tbody tr')
    for row, indices, scores in zip(rows, answer["indices"], answer["scores"], strict=True):
        cells = row.find_elements(By.TAG_NAME, "td")
        assert [int(c.get_attribute("data-index")) for c in cells] == indices
        got = [np.float32(c.get_attribute("data-score")) for c in cells]
        assert got == [np.float32(s) for s in scores]
    assert by_id(driver, "download-npy").is_displayed() is False
    # Users and items with ids: the ids are listed beside the indices.
    load_example(driver, "Users and items: top items per user")
    compute(driver)
    answer = server.post("similarity/user-item", curl_body(driver))
    first = driver.find_elements(By.CSS_SELECTOR, '[data-testid="table"] tbody tr')[0]
    assert [
        c.find_element(By.TAG_NAME, "small").text for c in first.find_elements(By.TAG_NAME, "td")
    ] == answer["items"][0]
    assert console_errors(driver) == []


def test_a_ragged_input_shows_the_problem_at_a1_with_its_request_id(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    set_text(by_id(driver, "input-a"), "[[1, 2, 3], [4, 5]]")
    compute(driver)
    error = by_id(driver, "error")
    assert error.is_displayed()
    assert "422" in error.text and "a[1]" in error.text, error.text
    assert re.search(r"request id: [0-9a-f-]{36}", error.text), error.text
    beside = driver.find_element(By.ID, "a-error")
    assert beside.text.startswith("a[1]"), beside.text
    assert by_id(driver, "input-a").get_attribute("aria-invalid") == "true"
    # A local mistake is named the same way, without a request.
    set_text(by_id(driver, "input-a"), "[[1, 2,")
    compute(driver)
    assert driver.find_element(By.ID, "a-error").text.startswith("a: not valid JSON")
    assert console_errors(driver, "422") == []


def test_a_whole_request_pasted_into_a_fills_the_form(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    request = {"a": [[1, 0], [0.6, 0.8], [0, 1]], "top_k": 1, "exclude_self": True}
    set_text(by_id(driver, "input-a"), json.dumps(request))
    by_id(driver, "metric").click()  # leaving the field fills the form
    assert json.loads(by_id(driver, "input-a").get_attribute("value")) == request["a"]
    assert by_id(driver, "top-k").get_attribute("value") == "1"
    assert driver.find_element(By.ID, "exclude-self").is_selected()
    compute(driver)
    assert curl_body(driver) == {**request, "metric": "cosine"}
    assert console_errors(driver) == []


def test_npy_files_are_read_in_the_page_and_pairwise_scores_drawn_as_bars(
    driver: webdriver.Chrome, server: Server, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 16)).astype(np.float32)
    b = (a + rng.standard_normal((6, 16)) * np.linspace(0.1, 3, 6)[:, None]).astype(">f8")
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    open_page(driver, server)
    Select(by_id(driver, "operation")).select_by_value("pairwise")
    by_id(driver, "file-a").send_keys(str(tmp_path / "a.npy"))
    by_id(driver, "file-b").send_keys(str(tmp_path / "b.npy"))
    WebDriverWait(driver, 10).until(
        lambda d: by_id(d, "input-b").get_attribute("value").startswith('{"dtype"')
    )
    compute(driver)
    body = curl_body(driver)
    assert body["a"]["dtype"] == "float32" and body["a"]["shape"] == [6, 16]
    assert body["b"]["dtype"] == "float64" and body["b"]["shape"] == [6, 16]
    answer = server.post("similarity/pairwise", body)
    direct = server.post("similarity/pairwise", {"a": a.tolist(), "b": b.tolist()})
    np.testing.assert_allclose(answer["scores"], direct["scores"], atol=1e-6)
    data = dataset(driver, "heatmap")
    assert data["kind"] == "bars" and data["count"] == "6"
    width, base = int(data["barW"]), int(data["base"])
    legend = dataset(driver, "legend")
    for i, score in enumerate(answer["scores"]):
        x = i * width + width // 2
        y = base - 2 if score >= 0 else base + 2
        want = expected_rgb(legend["kind"], -1, 1, score)
        got = pixels(driver, [(x, y)])[0]
        assert off(got, want) <= 1, (i, got, want)
        text = hover(driver, x, 5)
        assert re.search(rf"pair {i}, value = (\S+)", text), text
        assert np.float32(text.rsplit(" ", 1)[1]) == np.float32(score)
    assert console_errors(driver) == []


def test_table_rows_picked_by_id_are_named_and_large_results_down_sampled(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#side-a .pick").is_displayed()
    )
    Select(driver.find_element(By.ID, "table-a")).select_by_value("users")
    set_text(driver.find_element(By.ID, "rows-a"), "u1, u3, u4")
    driver.find_element(By.ID, "use-a").click()
    assert json.loads(by_id(driver, "input-a").get_attribute("value")) == {
        "table": "users",
        "ids": ["u1", "u3", "u4"],
    }
    set_text(by_id(driver, "input-b"), "")
    compute(driver)
    answer = server.post("similarity/matrix", curl_body(driver))
    check_heatmap(driver, np.array(answer["matrix"], dtype=np.float32), names=["u1", "u3", "u4"])
    # A whole table of 600 rows against itself: drawn as 300 x 300 means of 2 x 2 blocks.
    Select(driver.find_element(By.ID, "table-a")).select_by_value("big")
    set_text(driver.find_element(By.ID, "rows-a"), "")
    driver.find_element(By.ID, "use-a").click()
    Select(by_id(driver, "metric")).select_by_value("euclidean")
    compute(driver)
    answer = server.post("similarity/matrix", curl_body(driver))
    matrix = np.array(answer["matrix"], dtype=np.float32)
    data = dataset(driver, "heatmap")
    assert (data["stepR"], data["stepC"], data["cellW"]) == ("2", "2", "1")
    assert "down-sampled" in by_id(driver, "note").text
    legend = dataset(driver, "legend")
    assert legend["kind"] == "sequential" and float(legend["lo"]) == 0
    assert np.float32(legend["hi"]) == matrix.max()
    for r, c in [(0, 0), (10, 200), (299, 1)]:
        mean = float(matrix[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].astype(np.float64).mean())
        want = expected_rgb("sequential", 0, float(matrix.max()), mean)
        got = pixels(driver, [(c, r)])[0]
        assert off(got, want) <= 1, (r, c, got, want)
    assert console_errors(driver) == []


def wait_for_file(folder: Path, name: str) -> Path:
    path = folder / name
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.is_file() and not (folder / f"{name}.crdownload").exists():
            return path
        time.sleep(0.05)
    raise TimeoutError(f"{name} was not downloaded: {os.listdir(folder)}")


def test_results_download_as_npy_and_json(
    driver: webdriver.Chrome, server: Server, downloads: Path
) -> None:
    open_page(driver, server)
    load_example(driver, "Users and items: the whole matrix")
    Select(driver.find_element(By.ID, "encoding")).select_by_value("base64")
    compute(driver)
    body = curl_body(driver)
    assert body["response_encoding"] == "base64"
    answer = server.post("similarity/user-item", {**body, "response_encoding": "json"})
    check_heatmap(driver, np.array(answer["matrix"], dtype=np.float32))
    by_id(driver, "download-npy").click()
    saved = np.load(wait_for_file(downloads, "simserve-user-item.npy"))
    assert saved.dtype == np.float32 and saved.shape == (4, 3)
    assert np.array_equal(saved, np.array(answer["matrix"], dtype=np.float32))
    by_id(driver, "download-json").click()
    assert json.loads(
        wait_for_file(downloads, "simserve-user-item.json").read_text()
    ) == server.post("similarity/user-item", body)
    load_example(driver, "Nearest neighbours")
    compute(driver)
    answer = server.post("similarity/matrix", curl_body(driver))
    by_id(driver, "download-indices").click()
    indices = np.load(wait_for_file(downloads, "simserve-matrix-indices.npy"))
    assert indices.dtype == np.int64 and indices.tolist() == answer["indices"]
    by_id(driver, "download-npy").click()
    scores = np.load(wait_for_file(downloads, "simserve-matrix-scores.npy"))
    assert np.array_equal(scores, np.array(answer["scores"], dtype=np.float32))
    assert console_errors(driver) == []


def test_with_api_keys_the_page_loads_and_sends_the_key_typed_into_it(
    driver: webdriver.Chrome, auth_server: Server
) -> None:
    open_page(driver, auth_server)
    WebDriverWait(driver, 10).until(
        lambda d: "asks for an API key" in d.find_element(By.ID, "key-note").text
    )
    load_example(driver, "Nearest neighbours")
    compute(driver)
    assert "401" in by_id(driver, "error").text
    # The key field is marked invalid, with a message tied to it.
    key = driver.find_element(By.ID, "key")
    assert key.get_attribute("aria-invalid") == "true"
    assert "key-error" in key.get_attribute("aria-describedby").split()
    assert "API key" in driver.find_element(By.ID, "key-error").text
    key.send_keys(API_KEY)
    compute(driver)
    assert not by_id(driver, "error").is_displayed()
    assert key.get_attribute("aria-invalid") is None
    assert driver.find_element(By.ID, "key-error").text == ""
    command = curl_command(driver)
    assert "$SIMSERVE_API_KEY" in command and API_KEY not in command
    answer = auth_server.post("similarity/matrix", curl_body(driver), key=API_KEY)
    assert run_curl(driver, SIMSERVE_API_KEY=API_KEY) == answer
    # The key lives in the page only: not in storage, not in the address.
    assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0
    assert API_KEY not in driver.current_url
    assert console_errors(driver, "401") == []


def test_a_fractional_set_number_draws_one_whole_set_and_the_field_shows_it(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    load_example(driver, "A matrix per set: the article's (5, 10, 128)")
    compute(driver)
    matrix = np.array(server.post("similarity/matrix", curl_body(driver))["matrix"], np.float32)
    field = driver.find_element(By.ID, "set")
    field.send_keys(Keys.CONTROL, "a", Keys.NULL, "2.5", Keys.TAB)
    shown = field.get_attribute("value")
    assert shown in ("2", "3"), shown
    check_heatmap(driver, matrix[int(shown) - 1], hover_cells=3)
    assert by_id(driver, "hover").text.startswith(f"set {shown}: ")
    # Top-k lists over sets: a fraction picks one whole set too, not none.
    set_text(by_id(driver, "input-a"), "[[[1, 2], [3, 4]], [[1, 0], [0, 1]], [[1, 1], [2, 0]]]")
    set_text(by_id(driver, "input-b"), "")
    set_text(by_id(driver, "top-k"), "1")
    compute(driver)
    answer = server.post("similarity/matrix", curl_body(driver))
    assert answer["shape"] == [3, 2, 1]
    field.send_keys(Keys.CONTROL, "a", Keys.NULL, "1.5", Keys.TAB)
    shown = field.get_attribute("value")
    assert shown in ("1", "2"), shown
    table = by_id(driver, "table")
    assert f"(set {shown})" in table.find_element(By.TAG_NAME, "caption").text
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    got = [
        [int(c.get_attribute("data-index")) for c in r.find_elements(By.TAG_NAME, "td")]
        for r in rows
    ]
    assert got == answer["indices"][int(shown) - 1]
    assert console_errors(driver) == []


def test_a_top_k_answer_of_130000_rows_is_shown_and_a_failure_to_show_is_not_blamed_on_the_request(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    Select(by_id(driver, "operation")).select_by_value("user-item")
    driver.execute_script(
        "document.getElementById('input-a').value ="
        " JSON.stringify(Array.from({length: 130000}, (_, i) => [1 + (i % 3)]))"
    )
    set_text(by_id(driver, "input-b"), "[[1], [2]]")
    set_text(by_id(driver, "top-k"), "1")
    compute(driver)
    assert not by_id(driver, "error").is_displayed(), by_id(driver, "error").text
    assert "(130000, 1)" in by_id(driver, "summary").text
    rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="table"] tbody tr')
    assert len(rows) == 200
    assert "first 200 of 130000 rows" in by_id(driver, "table").text
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert [int(td.get_attribute("data-index")) for td in first] == [0]
    # Whatever fails while showing an answer the server gave: said so, with its status.
    driver.execute_script("window.drawTable = () => { throw new Error('drawing failed'); }")
    load_example(driver, "Nearest neighbours")
    compute(driver)
    error = by_id(driver, "error").text
    assert "No answer" not in error and "request failed" not in error, error
    assert "answered 200" in error and "drawing failed" in error, error
    assert re.search(r"request id: [0-9a-f-]{36}", error), error
    assert console_errors(driver) == []


def wcag_contrast(one: tuple[int, ...], two: tuple[int, ...]) -> float:
    """The WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(rgb: tuple[int, ...]) -> float:
        srgb = [c / 255 for c in rgb]
        lin = [s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4 for s in srgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(one), luminance(two)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def hex_rgb(text: str) -> tuple[int, ...]:
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))


# Records the heatmap's fillText calls (text, colour, position, width), then calls through.
RECORD_LABELS = """window.labels = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y) {
  if (this.canvas.id === 'heatmap') {
    window.labels.push([String(text), this.fillStyle, x, y, this.measureText(text).width]);
  }
  return fillText.apply(this, arguments);
};"""


def cell_labels(driver: webdriver.Chrome) -> dict[tuple[int, int], tuple[str, str, float]]:
    """The value text drawn in each cell (r, c): text, colour and width in pixels."""
    data = dataset(driver, "heatmap")
    cw, ch, x0, y0 = (int(data[k]) for k in ("cellW", "cellH", "x0", "y0"))
    found = {}
    for text, colour, x, y, width in driver.execute_script("return window.labels"):
        if x >= x0 and y >= y0:  # not a row or column name
            found[(int((y - y0) // ch), int((x - x0) // cw))] = (text, colour, width)
    driver.execute_script("window.labels = []")
    return found


def test_cell_text_is_black_or_white_at_4_5_to_1_on_every_colour_of_both_scales(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    # The cells drawn: 100 values across each scale, each cell's text on its pixels.
    driver.execute_script(RECORD_LABELS)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    cases = [
        ("euclidean", [[i] for i in range(10)], [[-10 * j] for j in range(10)]),
        ("dot", [[i, 1] for i in range(10)], [[1, 10 * j - 49.5] for j in range(10)]),
    ]
    for metric, a, b in cases:
        Select(by_id(driver, "metric")).select_by_value(metric)
        driver.execute_script(
            "document.getElementById('input-a').value = arguments[0];"
            "document.getElementById('input-b').value = arguments[1];",
            json.dumps(a),
            json.dumps(b),
        )
        compute(driver)
        data = dataset(driver, "heatmap")
        cw, ch, x0, y0 = (int(data[k]) for k in ("cellW", "cellH", "x0", "y0"))
        labels = cell_labels(driver)
        assert len(labels) == 100, (metric, len(labels))
        cells = sorted(labels)
        backgrounds = pixels(driver, [(x0 + c * cw + 1, y0 + r * ch + 1) for r, c in cells])
        for cell, background in zip(cells, backgrounds, strict=True):
            text, colour, _ = labels[cell]
            ratio = wcag_contrast(background, hex_rgb(colour))
            assert ratio >= 4.5, (metric, cell, text, background, colour, ratio)
    # And the scale functions, 256 colours each: the text colour the page picks for each.
    samples = driver.execute_script(
        "return ['diverging', 'sequential'].flatMap((kind) => Array.from({length: 256},"
        " (_, i) => { const rgb = colour(kind, i / 255); return [kind, rgb, textOn(rgb)]; }))"
    )
    assert len(samples) == 512
    for kind, rgb, text in samples:
        assert text in ("#000", "#fff"), text
        ink = (0, 0, 0) if text == "#000" else (255, 255, 255)
        assert wcag_contrast(tuple(rgb), ink) >= 4.5, (kind, rgb, text)
    assert console_errors(driver) == []


def test_cell_labels_keep_three_significant_digits_at_any_magnitude_and_fit_their_cell(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    driver.execute_script(RECORD_LABELS)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    Select(by_id(driver, "metric")).select_by_value("dot")
    set_text(by_id(driver, "input-b"), "")
    for a in (
        [[0.01, 0.02], [-0.03, 0.04], [0.05, -0.01]],
        [[300, 400], [-500, 200], [123, -456]],
        [[1e-4, 3e-4], [-2e-4, 5e-5], [7e-4, -1e-4]],
    ):
        set_text(by_id(driver, "input-a"), json.dumps(a))
        compute(driver)
        matrix = server.post("similarity/matrix", curl_body(driver))["matrix"]
        cw = int(dataset(driver, "heatmap")["cellW"])
        labels = cell_labels(driver)
        assert len(labels) == 9, labels
        for (r, c), (text, _, width) in labels.items():
            want = matrix[r][c]
            assert len(text) <= 8 and width <= cw - 2, (text, width, cw)
            assert math.isclose(float(text), want, rel_tol=0.006), (r, c, text, want)
    assert console_errors(driver) == []


def test_unreadable_numbers_are_refused_beside_their_field_and_nothing_is_sent(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    set_text(by_id(driver, "input-a"), "[[1, 0], [0.6, 0.8], [0, 1], [0.8, 0.6]]")
    set_text(by_id(driver, "input-b"), "")
    sent = (
        "return performance.getEntriesByType('resource')"
        ".filter((e) => /similarity/.test(e.name)).length"
    )

    def refused(slot: str, start: str) -> None:
        before = driver.execute_script(sent)
        compute(driver)
        error = by_id(driver, "error")
        assert error.is_displayed() and error.text.startswith("Not sent"), error.text
        beside = driver.find_element(By.ID, f"{slot}-error").text
        assert beside.startswith(start), beside
        field = driver.find_element(By.ID, f"input-{slot}" if slot in ("a", "b") else slot)
        assert field.get_attribute("aria-invalid") == "true"
        assert driver.execute_script(sent) == before
        assert not driver.find_element(By.ID, "curl-box").is_displayed()

    for slot, typed in (("top-k", "2e"), ("threshold", "--1")):
        for other in ("top-k", "threshold"):
            driver.find_element(By.ID, other).clear()
        field = driver.find_element(By.ID, slot)
        field.send_keys(typed)
        assert driver.execute_script("return arguments[0].validity.badInput", field), typed
        refused(slot, f"{slot.replace('-', '_')}: not a number")
        field.clear()
    # JSON numbers beyond a double's range: Infinity, which JSON.stringify would send as null.
    set_text(by_id(driver, "input-a"), "[[1e400, 1], [1, 1]]")
    refused("a", "a[0][0]: not a finite number")
    set_text(by_id(driver, "input-a"), "[[1, 2]]")
    set_text(by_id(driver, "input-b"), "[[3, 4], [1, -1e999]]")
    refused("b", "b[1][1]: not a finite number")
    # Fixed, the same form computes.
    set_text(by_id(driver, "input-b"), "[[3, 4], [1, -1]]")
    compute(driver)
    assert not by_id(driver, "error").is_displayed()
    assert curl_body(driver)["b"] == [[3, 4], [1, -1]]
    assert console_errors(driver) == []


def test_threshold_captions_say_at_least_for_similarities_and_at_most_for_distances(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    set_text(by_id(driver, "input-a"), "[[1, 0], [0.6, 0.8], [0, 1]]")
    set_text(by_id(driver, "input-b"), "")
    set_text(by_id(driver, "threshold"), "0.5")
    for metric, words in (
        ("cosine", "scoring at least 0.5 (the threshold)"),
        ("euclidean", "at a distance of at most 0.5 (the threshold)"),
    ):
        Select(by_id(driver, "metric")).select_by_value(metric)
        compute(driver)
        caption = by_id(driver, "table").find_element(By.TAG_NAME, "caption").text
        assert words in caption, caption
    assert console_errors(driver) == []


def test_the_keyboard_keeps_its_focus_on_compute_and_the_focus_ring_contrasts(
    driver: webdriver.Chrome, server: Server
) -> None:
    open_page(driver, server)
    driver.execute_script("document.getElementById('summary').textContent = ''")
    by_id(driver, "compute").send_keys(Keys.ENTER)
    WebDriverWait(driver, 20).until(
        lambda d: (
            "ms" in d.find_element(By.ID, "summary").text
            and d.find_element(By.ID, "compute").get_attribute("aria-disabled") is None
        )
    )
    assert driver.execute_script("return document.activeElement.id") == "compute"
    # The focus ring (keyboard focus) reaches 3:1 against the page's white.
    ring = by_id(driver, "compute").value_of_css_property("outline-color")
    rgb = tuple(int(v) for v in re.findall(r"\d+", ring)[:3])
    assert wcag_contrast(rgb, (255, 255, 255)) >= 3, ring
    assert console_errors(driver) == []


@pytest.fixture(scope="module")
def id_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`nums` (3 x 4, ids 42, 7, 100: numbers) and `wide` (3 x 4, ids wider than the margin)."""
    path = tmp_path_factory.mktemp("id-tables")
    rng = np.random.default_rng(7)
    np.save(path / "nums.npy", rng.standard_normal((3, 4)).astype(np.float32))
    (path / "nums.ids.txt").write_text("42\n7\n100\n")
    np.save(path / "wide.npy", rng.standard_normal((3, 4)).astype(np.float32))
    (path / "wide.ids.txt").write_text("\U0001f642" * 9 + "\n東京都千代田区丸の内一丁目\nu1\n")
    running = Server("--tables", str(path))
    yield running
    running.stop()


def use_table(driver: webdriver.Chrome, table: str, rows: str, read_as: str) -> None:
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#side-a .pick").is_displayed()
    )
    Select(driver.find_element(By.ID, "table-a")).select_by_value(table)
    set_text(driver.find_element(By.ID, "rows-a"), rows)
    Select(driver.find_element(By.ID, "as-a")).select_by_value(read_as)
    driver.find_element(By.ID, "use-a").click()


def test_numeric_ids_are_picked_as_ids_when_asked_and_as_rows_by_default(
    driver: webdriver.Chrome, id_server: Server
) -> None:
    open_page(driver, id_server)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    set_text(by_id(driver, "input-b"), "")
    use_table(driver, "nums", "42, 7", "ids")
    assert json.loads(by_id(driver, "input-a").get_attribute("value")) == {
        "table": "nums",
        "ids": ["42", "7"],
    }
    compute(driver)
    assert not by_id(driver, "error").is_displayed(), by_id(driver, "error").text
    body = curl_body(driver)
    assert body["a"] == {"table": "nums", "ids": ["42", "7"]}
    answer = id_server.post("similarity/matrix", body)
    assert run_curl(driver) == answer
    check_heatmap(driver, np.array(answer["matrix"], dtype=np.float32), names=["42", "7"])
    # Auto: all digits are rows, as before.
    use_table(driver, "nums", "2 0", "")
    assert json.loads(by_id(driver, "input-a").get_attribute("value")) == {
        "table": "nums",
        "rows": [2, 0],
    }
    # As rows, an entry that is no row number is refused beside the field; a is unchanged.
    use_table(driver, "nums", "42, x", "rows")
    field = driver.find_element(By.ID, "rows-a")
    assert field.get_attribute("aria-invalid") == "true"
    assert "whole numbers" in driver.find_element(By.ID, "a-error").text
    assert json.loads(by_id(driver, "input-a").get_attribute("value"))["rows"] == [2, 0]
    use_table(driver, "nums", "100", "ids")
    assert field.get_attribute("aria-invalid") is None
    assert driver.find_element(By.ID, "a-error").text == ""
    assert console_errors(driver) == []


def test_a_key_outside_visible_ascii_is_refused_beside_the_key_field_and_not_sent(
    driver: webdriver.Chrome, auth_server: Server
) -> None:
    open_page(driver, auth_server)
    load_example(driver, "Nearest neighbours")
    sent = (
        "return performance.getEntriesByType('resource')"
        ".filter((e) => /similarity/.test(e.name)).length"
    )
    key = driver.find_element(By.ID, "key")
    for typed in ("k€y", "page test"):
        set_text(key, typed)
        before = driver.execute_script(sent)
        compute(driver)
        error = by_id(driver, "error")
        assert error.is_displayed() and error.text.startswith("Not sent"), error.text
        assert "ASCII" in error.text and "ISO-8859-1" not in error.text, error.text
        assert key.get_attribute("aria-invalid") == "true"
        assert "ASCII" in driver.find_element(By.ID, "key-error").text
        assert driver.execute_script(sent) == before
        assert not driver.find_element(By.ID, "curl-box").is_displayed()
    set_text(key, API_KEY)
    compute(driver)
    assert not by_id(driver, "error").is_displayed()
    assert key.get_attribute("aria-invalid") is None
    # Only the page's look-up of the tables, before the key, is refused.
    assert console_errors(driver, "401") == []


def test_at_320_pixels_the_page_needs_no_sideways_scrolling(
    driver: webdriver.Chrome, server: Server
) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 320, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        open_page(driver, server)
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#side-a .pick").is_displayed()
        )
        widths = "return [document.documentElement.scrollWidth, window.innerWidth]"
        scroll, inner = driver.execute_script(widths)
        assert inner == 320 and scroll <= inner, (scroll, inner)
        load_example(driver, "Nearest neighbours")
        compute(driver)
        scroll, inner = driver.execute_script(widths)
        assert scroll <= inner, (scroll, inner)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert console_errors(driver) == []


def test_row_labels_are_shortened_with_an_ellipsis_to_fit_the_margin(
    driver: webdriver.Chrome, id_server: Server
) -> None:
    open_page(driver, id_server)
    Select(by_id(driver, "operation")).select_by_value("matrix")
    set_text(by_id(driver, "input-b"), "")
    ids = ["\U0001f642" * 9, "東京都千代田区丸の内一丁目", "u1"]
    # (Set by script: chromedriver cannot type characters beyond the BMP.)
    driver.execute_script(
        "document.getElementById('input-a').value = JSON.stringify(arguments[0])",
        {"table": "wide", "ids": ids},
    )
    # Every right-aligned text drawn on the heatmap: the row labels, with their widths.
    driver.execute_script(
        "const seen = window.rowLabels = [];"
        "const fill = CanvasRenderingContext2D.prototype.fillText;"
        "CanvasRenderingContext2D.prototype.fillText = function (text, x, y) {"
        "  if (this.canvas.id === 'heatmap' && this.textAlign === 'right')"
        "    seen.push([text, x, this.measureText(text).width]);"
        "  return fill.apply(this, arguments); };"
    )
    compute(driver)
    assert not by_id(driver, "error").is_displayed(), by_id(driver, "error").text
    x0 = int(dataset(driver, "heatmap")["x0"])
    labels = driver.execute_script("return window.rowLabels")
    assert len(labels) == 3 and labels[2][0] == "u1", labels
    for (text, x, width), name in zip(labels, ids, strict=True):
        assert x <= x0 and x - width >= 0, (text, x, width)
        if text != name:
            assert text.endswith("…") and name.startswith(text[:-1]) and len(text) > 1, text
    assert labels[1][0] != ids[1], labels
    assert console_errors(driver) == []


class OtherSite(BaseHTTPRequestHandler):
    """A page of another origin (another port of 127.0.0.1: same site, other origin)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        page = b"<!doctype html><title>another origin</title><p>another origin"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def other_site() -> Iterator[str]:
    """The origin of a page served on another loopback port."""
    site = ThreadingHTTPServer(("127.0.0.1", 0), OtherSite)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


def answered(server: Server) -> dict[tuple[str, str], float]:
    """POST requests counted by the server's metrics so far: {(route, status): count}."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.findall(r'simserve_http_requests_total\{method="POST",route="([^"]+)",status="(\d+)"\} (\S+)', text)
    return {(route, status): float(count) for route, status, count in found}


# Requests a page can send to any origin without a CORS preflight (mode "no-cors", a body of
# no type): an inference, and a table reload. The answers are opaque to the page; what the
# server did, its metrics tell.
SEND_FROM_PAGE = """
const [url, done] = arguments;
const inference = {inputs: [
  {name: "a", shape: [1, 2], datatype: "FP32", data: [1, 0]},
  {name: "b", shape: [1, 2], datatype: "FP32", data: [0.6, 0.8]}]};
const send = (path, body) => fetch(url + path, {method: "POST", mode: "no-cors", body})
  .then(() => "sent", (error) => String(error));
Promise.all([
  send("/v2/models/pairwise/infer", new Blob([JSON.stringify(inference)])),
  send("/tables/reload", null),
]).then(done);
"""


def named(url: str, host: str) -> str:
    """`url` (http://127.0.0.1:PORT) with `host` in place of the address, or as it is for
    `host` 127.0.0.1."""
    return url.replace("127.0.0.1", host, 1)


@pytest.mark.parametrize(
    "page_host, server_host",
    # Loopback is potentially trustworthy: Chromium sends Sec-Fetch-Site (same-site here:
    # another port of one address). To names under .test (loopback too, see conftest) it
    # sends none, as over plain HTTP to an internal address: Origin against Host decides.
    [("127.0.0.1", "127.0.0.1"), ("other.test", "simserve.test")],
)
def test_a_page_of_another_origin_cannot_have_the_browser_compute_or_reload_unless_trusted(
    driver: webdriver.Chrome, server: Server, other_site: str, page_host: str, server_host: str
) -> None:
    page = named(other_site, page_host)
    infer = ("/v2/models/{model}/infer", "403")
    reload = ("/tables/reload", "403")
    before = answered(server)
    driver.get(page)
    assert driver.execute_async_script(SEND_FROM_PAGE, named(server.url, server_host)) == ["sent", "sent"]
    after = answered(server)
    assert after.get(infer, 0) - before.get(infer, 0) == 1, after
    assert after.get(reload, 0) - before.get(reload, 0) == 1, after
    assert sum(after.values()) - sum(before.values()) == 2, after

    # Trusted, the same page's inference is computed (and the reload refused as a table
    # reload is without tables: not for its origin).
    trusting = Server("--trusted-origins", page)
    try:
        before = answered(trusting)
        driver.get(page)
        sent = driver.execute_async_script(SEND_FROM_PAGE, named(trusting.url, server_host))
        assert sent == ["sent", "sent"]
        after = answered(trusting)
        done = ("/v2/models/{model}/infer", "200")
        assert after.get(done, 0) - before.get(done, 0) == 1, after
        assert not any(status == "403" for _, status in after), after
    finally:
        trusting.stop()


def test_the_page_reached_by_a_name_computes_with_no_sec_fetch_site_by_origin_and_host(
    driver: webdriver.Chrome, server: Server
) -> None:
    # Over plain HTTP to a name, Chromium sends no Sec-Fetch-Site: the page's own requests
    # pass because their Origin names the Host they were sent to.
    driver.get(named(server.url, "simserve.test") + "/")
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.querySelectorAll('#example option').length") > 0
    )
    load_example(driver, "Nearest neighbours")
    before = answered(server)
    compute(driver)
    assert not by_id(driver, "error").is_displayed(), by_id(driver, "error").text
    after = answered(server)
    def counted(counts: dict[tuple[str, str], float], status: str) -> float:
        return sum(count for (_, code), count in counts.items() if code == status)

    assert counted(after, "200") - counted(before, "200") == 1, (before, after)
    assert counted(after, "403") == counted(before, "403"), (before, after)
