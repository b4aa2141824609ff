"""CI (.ci/run) runs README's test commands, and a time-out fails it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_test_commands_are_what_ci_runs():
    """README's test commands are the ones .ci/run runs, each under a time limit; none besides."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Test\n"):]
    block = re.findall(r"^```bash\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)[0]
    readme = [line.strip() for line in block.splitlines() if line.strip()]
    ci_runs = re.findall(r"^\s*run \d+ (python -m pytest .*?)(?: \|\||$)", CI, flags=re.MULTILINE)
    assert readme == ci_runs and len(readme) == 2
    assert CI.count("python -m pytest") == len(ci_runs)  # no pytest run outside the timed ones


def _run_function() -> str:
    """The shell function .ci/run runs every command through."""
    return re.search(r"^run\(\) \{\n.*?^\}\n", CI, flags=re.DOTALL | re.MULTILINE).group(0)


def test_a_time_out_or_a_failure_fails_and_success_passes():
    def status(command: str) -> int:
        return subprocess.run(["bash", "-c", _run_function() + command], capture_output=True, timeout=60).returncode

    assert status("run 1 sleep 5") == 1  # timed out
    assert status("run 5 false") == 1
    assert status("run 5 bash -c 'exit 5'") == 1  # pytest collected nothing
    assert status("run 5 true") == 0
