"""Every typed error survives pickling (worker processes, Dask) with its message and attributes:
an error raised in a worker reaches the user as the same typed error, never BrokenProcessPool."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

import sbml_met
from sbml_met import errors
from sbml_met.errors import NegativeCountError, SbmlMetError, Unsupported

EXAMPLES = {
    errors.SbmlMetError: lambda: errors.SbmlMetError("plain"),
    errors.SBMLParseError: lambda: errors.SBMLParseError("invalid SBML", ("line 3: bad", "line 9: worse")),
    errors.UnsupportedSBMLError: lambda: errors.UnsupportedSBMLError([Unsupported("R", "fast reaction"),
                                                                     Unsupported("X", "conversion factor")]),
    errors.UnsupportedByEngineError: lambda: errors.UnsupportedByEngineError(
        "fsp", [Unsupported("E1", "state_events")], ["use the SSA"], model="m"),
    errors.PropensityError: lambda: errors.PropensityError("R", -1.5, {"A": 3.0, "B": 0.0}, 2.5),
    errors.NegativeCountError: lambda: errors.NegativeCountError("R", "A", 0.0, 1.25),
    errors.CountOverflowError: lambda: errors.CountOverflowError("E", 6.0e23, 0.0),
    errors.UnknownIdError: lambda: errors.UnknownIdError("no species 'Q' in model 'm'"),
    errors.InvalidArgumentError: lambda: errors.InvalidArgumentError("n must be >= 1, got 0"),
    errors.StateSpaceTooLargeError: lambda: errors.StateSpaceTooLargeError("more than 10 states"),
    errors.CheckpointMismatchError: lambda: errors.CheckpointMismatchError("trained on another network"),
    errors.BioModelsError: lambda: errors.BioModelsError("no entry BIOMD9"),
    errors.TrajectoryError: lambda: errors.TrajectoryError("jump at t=1 fits no reaction"),
}


def error_classes() -> list[type]:
    """Every SbmlMetError subclass in sbml_met.errors (a new one needs an example above)."""
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, SbmlMetError)]


def same(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and str(a) == str(b) and a.args == b.args and vars(a) == vars(b)


def raise_it(cls: type) -> None:
    raise EXAMPLES[cls]()


def test_every_error_class_has_an_example():
    assert set(error_classes()) == set(EXAMPLES)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_error_pickles_with_message_and_attributes(cls):
    err = EXAMPLES[cls]()
    again = pickle.loads(pickle.dumps(err))
    assert same(err, again)
    if isinstance(err, errors.UnsupportedSBMLError):
        assert again.reasons == err.reasons and again.element_id == err.element_id


def test_errors_cross_a_process_pool():
    with ProcessPoolExecutor(max_workers=1) as pool:
        for cls in EXAMPLES:
            with pytest.raises(cls) as info:
                pool.submit(raise_it, cls).result()
            assert same(info.value, EXAMPLES[cls]())


def test_errors_cross_dask_workers():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        for cls in EXAMPLES:
            with pytest.raises(cls) as info:
                client.submit(raise_it, cls, pure=False).result()
            assert same(info.value, EXAMPLES[cls]())


BAD = "J: A => B; k\nA = 3; B = 0; k = 1"  # fires at a constant rate whether or not A is left


def test_negative_count_in_ssa_workers_is_the_typed_error():
    net = sbml_met.load_antimony(BAD)
    with pytest.raises(NegativeCountError) as info:
        sbml_met.simulate(net, [0, 10], n=10_000, seed=1, workers=2)
    assert info.value.reaction_id == "J" and info.value.species_id == "A"


def test_cli_run_at_n_10000_reports_the_typed_error(tmp_path):
    model = tmp_path / "bad.ant"
    model.write_text(BAD, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "sbml_met", "run", str(model), "--n", "10000", "--met", "off",
                          "--times", "0:10:11",
                          "--no-figures", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "BrokenProcessPool" not in out.stderr and "Traceback" not in out.stderr
    assert "reaction 'J' fires" in out.stderr and "'A'" in out.stderr
