"""Local worker processes: started only where they cannot rerun the user's script."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = """
import torch  # loaded: children come from a fork server, which imports the main script again
from sbml_met.parallel import spawn_is_safe


def check():
    return spawn_is_safe()


print("top level", spawn_is_safe())
{tail}
"""


@pytest.mark.parametrize("tail, expected", [
    ("", ["top level False"]),
    ('if __name__ == "__main__":\n    print("guarded", check())', ["top level False", "guarded True"]),
    ("if '__main__' == __name__:\n    x = 1\n    print('guarded', spawn_is_safe())", ["top level False", "guarded True"]),
])
def test_processes_start_only_from_inside_the_main_guard_of_a_script(tmp_path, tail, expected):
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(SCRIPT).replace("{tail}", tail), encoding="utf-8")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:-1] == expected


def test_no_script_means_no_guard_is_needed():
    code = "import torch; from sbml_met.parallel import spawn_is_safe; print(spawn_is_safe())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True"


def test_map_until_stops_starting_chunks_at_the_deadline():
    import time

    from sbml_met.parallel import map_until

    assert map_until(abs, [-1, -2, -3], workers=2) == {0: 1, 1: 2, 2: 3}
    assert map_until(abs, [-1, -2, -3], workers=2, deadline=time.monotonic() - 1) == {}


UNGUARDED = """
import warnings
import torch  # loaded: local workers would come from a fork server
import numpy as np
import sbml_met

net = sbml_met.models.load("birth_death")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = sbml_met.simulate(net, [0, 5], n=6000, seed=3, workers=2)
print(len(caught), caught[0].category.__name__ if caught else "-", caught[0].filename if caught else "-")
print(float(res.to_frame().query("time == 5")["count"].mean()))
"""


def test_an_unguarded_script_runs_in_one_process_with_the_same_numbers_and_a_warning(tmp_path):
    path = tmp_path / "unguarded.py"
    path.write_text(UNGUARDED, encoding="utf-8")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first, mean = out.stdout.strip().split("\n")
    n, category, filename = first.split(" ", 2)
    assert (n, category, filename) == ("1", "RuntimeWarning", str(path))
    import sbml_met

    again = sbml_met.simulate(sbml_met.models.load("birth_death"), [0, 5], n=6000, seed=3, workers=2)
    assert float(mean) == float(again.to_frame().query("time == 5")["count"].mean())
