"""Every ```python block of README.md runs as written, in order, in one fresh interpreter (as a
reader pasting them into one session would); BioModels is read from an offline cache."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "biomodels"


def python_blocks(text: str) -> list[str]:
    """The contents of every ```python fenced block, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def placeholders(block: str) -> list[int]:
    """Line numbers of a literal ``...`` used as a value (a placeholder, not code)."""
    return sorted({node.lineno for node in ast.walk(ast.parse(block))
                   if isinstance(node, ast.Constant) and node.value is Ellipsis})


def test_readme_blocks_are_code_without_placeholders():
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    for k, block in enumerate(blocks):
        assert placeholders(block) == [], f"block {k} has a literal ... at lines {placeholders(block)}"


def test_placeholder_check_catches_ellipsis():
    assert placeholders("x = [1, ...]\ny = 2") == [1]
    assert python_blocks("a\n```python\nx = 1\n```\n```bash\nls\n```\n") == ["x = 1\n"]


def _script(blocks: list[str]) -> str:
    """One script: each block in turn, announced on stderr so that a failure names its block."""
    parts = ["import sys"]
    for k, block in enumerate(blocks):
        parts.append(f"print('--- README python block {k}', file=sys.stderr, flush=True)")
        parts.append(block)
    return "\n".join(parts)


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    cache = tmp_path / "cache" / "sbml-met" / "biomodels"
    for entry in FIXTURES.glob("BIOMD*.xml"):
        (cache / entry.stem).mkdir(parents=True)
        shutil.copy(entry, cache / entry.stem / entry.name)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), MPLBACKEND="Agg",
               SBML_MET_BIOMODELS_URL="http://127.0.0.1:9")  # offline: the cache must answer
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", _script(blocks)], cwd=work, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("--- README python block") == len(blocks)
