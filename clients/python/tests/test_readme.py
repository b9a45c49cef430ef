"""The README's examples run against a real server (all but the one that needs tables)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

from servers import Server

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(server: Server) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            if "Table(" not in block:
                exec(block.replace("http://localhost:8080", server.url), namespace)
    # Each `print(...)  # shown` comment is what that line printed.
    shown = re.findall(r"^print\(.*\)  # (.+)$", "\n".join(blocks), re.MULTILINE)
    assert len(shown) >= 4
    lines = printed.getvalue().splitlines()
    for expected in shown:
        if "..." not in expected and "version" not in expected:
            assert expected in lines, (expected, lines)
