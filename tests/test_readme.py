"""The README's examples run as written (a newcomer copies them first)."""

from __future__ import annotations

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 2


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples save files in the working directory
    namespace: dict = {}
    for block in python_blocks():  # later blocks use names from earlier ones, as a reader would
        exec(compile(block, str(README), "exec"), namespace)
    assert len(namespace["m"]) == 1_000_000 - 5
    assert len(namespace["m2"]) == len(namespace["m"])
    assert namespace["counter"].total() == 1_000_000 - 21 + 1
