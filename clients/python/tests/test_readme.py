"""The README's examples run against real servers, print what the README shows, and pass
``mypy --strict``."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mypy import api as mypy
from servers import Server

from simserve_client import Client

README = Path(__file__).resolve().parents[1] / "README.md"
PYPROJECT = README.parent / "pyproject.toml"


def blocks() -> list[str]:
    found = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(found) >= 5
    return found


def shown_outputs(block: str) -> list[list[str]]:
    """What each `print(...)` of `block` is shown to print, in order: its trailing
    `# ...` comment, or the `# ...` lines right under it. Prints shown nothing are left out."""
    lines = block.splitlines()
    outputs = []
    for at, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        same_line = re.search(r"\)  # (.+)$", line)
        if same_line:
            outputs.append([same_line.group(1)])
            continue
        under = []
        for next_line in lines[at + 1 :]:
            if not next_line.startswith("# "):
                break
            under.append(next_line[2:])
        if under:
            outputs.append(under)
    return outputs


def matches(shown: str, printed: str) -> bool:
    """`shown` as the README writes it against a printed line: `...` ends a prefix."""
    if shown.endswith(", ..."):
        return printed.startswith(shown.removesuffix(", ..."))
    return printed == shown


def test_readme_examples_print_what_they_show(server: Server) -> None:
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    expected: list[list[str]] = []
    with contextlib.redirect_stdout(printed):
        for block in blocks():
            if "Table(" in block:
                continue  # run against a server with tables, below
            exec(block.replace("http://localhost:8080", server.url), namespace)
            expected += shown_outputs(block)
    assert len(expected) >= 6, expected
    lines = printed.getvalue().splitlines()
    # Each shown output is printed, as consecutive lines, after the one before it.
    at = 0
    for output in expected:
        found = next(
            (
                start
                for start in range(at, len(lines) - len(output) + 1)
                if all(matches(s, p) for s, p in zip(output, lines[start:], strict=False))
            ),
            None,
        )
        assert found is not None, (output, lines[at:])
        at = found + len(output)


def test_readme_tables_example_runs_against_a_tables_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("readme-tables")
    np.save(folder / "users.npy", np.random.default_rng(50).standard_normal((5, 4)))
    np.save(folder / "items.npy", np.random.default_rng(51).standard_normal((30, 4)))
    (folder / "users.ids.txt").write_text("".join(f"u{n}\n" for n in range(5)))
    item_ids = [f"sku-{n}" for n in range(30)]
    (folder / "items.ids.txt").write_text("".join(f"{i}\n" for i in item_ids))
    (block,) = [block for block in blocks() if "Table(" in block]
    with Server("--tables", str(folder)) as tables, Client(tables.url) as client:
        namespace: dict[str, Any] = {"client": client}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(block, namespace)
        versions = {info.name: info.version for info in client.tables()}
    recs = namespace["recs"]
    assert len(recs.ids) == 1 and len(recs.ids[0]) == 10
    assert set(recs.ids[0]) <= set(item_ids)
    assert recs.tables == versions


def test_readme_examples_type_check_under_mypy_strict(tmp_path: Path) -> None:
    """Every example, in order in one module (as the first sets up what the later use),
    type-checks with the package's own mypy settings and ``--strict``."""
    module = tmp_path / "readme_examples.py"
    module.write_text("\n".join(blocks()))
    cache = tmp_path / "mypy-cache"  # never in the repository
    flags = ["--strict", "--config-file", str(PYPROJECT), "--cache-dir", str(cache)]
    out, err, status = mypy.run([*flags, str(module)])
    assert status == 0, out + err
    assert "Success: no issues found in 1 source file" in out
    # and the check is real: an example that misuses the API fails it
    module.write_text("\n".join(blocks()) + "\nclient.matrix([[1.0]], top_k=2).ids.upper()\n")
    out, _, status = mypy.run([*flags, str(module)])
    assert status == 1 and '"upper"' in out, out
