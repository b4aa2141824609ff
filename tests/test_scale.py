"""Sweeps and ensembles beyond one process: local processes and a Dask cluster give the same table,
and a worker killed mid-run costs time, not data."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

import sbml_met
from sbml_met.errors import InvalidArgumentError, UnknownIdError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def autoreg_points(k: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"su": np.linspace(0.4, 1.6, k), "rb": np.linspace(10, 40, k)})


def test_simulate_is_bit_identical_on_one_two_processes_and_dask(client):
    from sbml_met.ssa import BLOCK

    net = sbml_met.models.load("autoregulation")
    n = 2 * BLOCK + 17
    one = sbml_met.simulate(net, [0, 2, 5], n=n, seed=11, workers=1)
    two = sbml_met.simulate(net, [0, 2, 5], n=n, seed=11, workers=2)
    dask = sbml_met.simulate(net, [0, 2, 5], n=n, seed=11, client=client)
    assert one.states.shape == (n, 3, net.n_species)
    assert np.array_equal(one.states, two.states) and np.array_equal(one.states, dask.states)
    first = sbml_met.simulate(net, [0, 2, 5], n=100, seed=11)  # block 0 is the plain seeded stream
    assert np.array_equal(first.states, one.states[:100])
    other = sbml_met.simulate(net, [0, 2, 5], n=n, seed=12, workers=2)
    assert not np.array_equal(other.states, one.states)
    # the blocks are independent streams: the mean of P at t = 5 is the same in each block
    means = [one.states[b * BLOCK:(b + 1) * BLOCK, 2, 1].mean() for b in range(2)]
    assert abs(means[0] - means[1]) < 5 * one.states[:, 2, 1].std() / np.sqrt(BLOCK / 2)


def test_fsp_sweep_equals_per_point_solve_fsp_locally_and_on_dask(client):
    net = sbml_met.models.load("autoregulation")
    points = autoreg_points()
    local = sbml_met.sweep(net, points, [1, 5], method="fsp", workers=2)
    dask = sbml_met.sweep(net, points, [1, 5], method="fsp", client=client)
    pd.testing.assert_frame_equal(local, dask)
    assert list(local.columns) == ["point", "su", "rb", "time", "species", "count", "probability", "error"]
    for i, row in points.iterrows():
        exact = sbml_met.solve_fsp(net.with_parameters(row.to_dict()), [1, 5]).to_frame()
        got = local[local.point == i].reset_index(drop=True)
        assert np.array_equal(got["count"], exact["count"])
        assert np.allclose(got["probability"], exact["probability"], rtol=0, atol=1e-15)


def test_strided_chunks_give_the_table_in_the_points_order():
    net = sbml_met.models.load("autoregulation")
    points = autoreg_points(21)  # 4 chunks of points k, k + 4, ... on one worker
    out = sbml_met.sweep(net, points, [1], method="ssa", n=20, seed=3, workers=1, table="moments")
    assert out["point"].is_monotonic_increasing and sorted(set(out.point)) == list(range(21))
    assert np.array_equal(out.drop_duplicates("point")[["su", "rb"]].to_numpy(), points.to_numpy())
    other = sbml_met.sweep(net, points, [1], method="ssa", n=20, seed=3, workers=2, table="moments")
    pd.testing.assert_frame_equal(out, other)  # 7 chunks of 3 on two workers: the same table


def test_ssa_sweep_is_seeded_per_point_whatever_the_workers():
    net = sbml_met.models.load("autoregulation")
    one = sbml_met.sweep(net, autoreg_points(4), [2], method="ssa", n=300, seed=7, workers=1, table="moments")
    two = sbml_met.sweep(net, autoreg_points(4), [2], method="ssa", n=300, seed=7, workers=2, table="moments")
    pd.testing.assert_frame_equal(one, two)
    assert list(one.columns) == ["point", "su", "rb", "time", "species", "mean", "std", "error"]


def test_failing_point_is_reported_and_the_sweep_goes_on():
    net = sbml_met.load_antimony("R: A => B; k*(A - 10)\nS: => A; 1\nA = 20; B = 0; k = 1")
    points = {"A": [20, 5]}  # at A = 5 the law is negative: PropensityError, for that point only
    out = sbml_met.sweep(net, points, [0.1], method="ssa", n=50, workers=1, table="moments")
    assert out[out.point == 0]["error"].isna().all()
    bad = out[out.point == 1]
    assert len(bad) == 1 and "PropensityError" in bad["error"].iloc[0]


def test_sweep_refuses_unknown_columns_and_methods():
    net = sbml_met.models.load("autoregulation")
    with pytest.raises(UnknownIdError, match="nope"):
        sbml_met.sweep(net, {"nope": [1.0]}, [1])
    with pytest.raises(InvalidArgumentError, match="fsp, ssa, met"):
        sbml_met.sweep(net, {"su": [1.0]}, [1], method="ode")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = open(f"/proc/{pid}/stat", encoding="utf-8").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sweep_and_kill_mid_run(sweep, busy) -> tuple[pd.DataFrame, int]:
    """Start ``sweep()`` in a thread, wait until ``busy()`` names a worker pid that is computing,
    SIGKILL it and check the sweep had not finished then; return the table and the pid."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("out", sweep()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and thread.is_alive() and time.monotonic() < deadline:
        pid = busy()
    assert pid is not None, "no worker was seen at work"
    os.kill(pid, signal.SIGKILL)
    assert thread.is_alive(), "the sweep ended before the kill"  # so the kill landed mid-run
    thread.join(300)
    assert not thread.is_alive() and "out" in result
    return result["out"], pid


def _computing(pids: list[int]):
    """A busy() for _sweep_and_kill_mid_run: a pid whose CPU time grows by 20 ms within 200 ms (an
    idle worker uses none; a loaded machine gives a computing one a fraction of a core)."""
    def busy():
        before = {p: _cpu_seconds(p) for p in pids}
        time.sleep(0.2)
        grown = [p for p in pids if _cpu_seconds(p) - before[p] >= 0.02]
        return grown[0] if grown else None
    return busy


def test_killed_dask_worker_costs_time_not_data(client):
    net = sbml_met.models.load("toggle_switch")
    points = pd.DataFrame({"sx": np.linspace(20, 60, 16)})
    reference = sbml_met.sweep(net, points, [5], method="ssa", n=400, seed=3, workers=1, table="moments")
    pids = list(client.run(os.getpid).values())
    out, pid = _sweep_and_kill_mid_run(
        lambda: sbml_met.sweep(net, points, [5], method="ssa", n=400, seed=3, client=client, table="moments"),
        _computing(pids))
    assert pid not in client.run(os.getpid).values()  # the worker did die, while it was computing
    pd.testing.assert_frame_equal(out, reference)


def test_killed_local_worker_process_costs_time_not_data():
    from sbml_met import parallel

    net = sbml_met.models.load("toggle_switch")
    points = pd.DataFrame({"sx": np.linspace(20, 60, 16)})
    # long enough (~2 s on two quiet cores) that the kill lands while the sweep runs
    reference = sbml_met.sweep(net, points, [20], method="ssa", n=2000, seed=3, workers=1, table="moments")
    sbml_met.sweep(net, points.iloc[:2], [5], method="ssa", n=10, workers=2)  # the pool is up
    pids = list(parallel._POOLS[2]._processes)
    out, pid = _sweep_and_kill_mid_run(
        lambda: sbml_met.sweep(net, points, [20], method="ssa", n=2000, seed=3, workers=2, table="moments"),
        _computing(pids))
    assert pid not in parallel._POOLS[2]._processes  # a new pool took over
    pd.testing.assert_frame_equal(out, reference)


def test_worker_killed_between_calls_does_not_break_the_next_call():
    # a pool worker that dies while idle (the OOM killer, a user's kill) leaves the kept pool broken:
    # the next call must rebuild it, not raise BrokenProcessPool at submit
    from sbml_met import parallel

    net = sbml_met.models.load("birth_death")
    points = pd.DataFrame({"k1": [5.0, 10.0, 20.0, 40.0]})
    reference = sbml_met.sweep(net, points, [2], method="ssa", n=200, seed=4, workers=1, table="moments")
    sbml_met.sweep(net, points, [2], method="ssa", n=20, seed=4, workers=2)  # the pool is up
    os.kill(next(iter(parallel._POOLS[2]._processes)), signal.SIGKILL)
    time.sleep(1.0)  # the pool notices its dead worker and marks itself broken
    out = sbml_met.sweep(net, points, [2], method="ssa", n=200, seed=4, workers=2, table="moments")
    pd.testing.assert_frame_equal(out, reference)


def test_sweep_command_writes_the_table(tmp_path):
    from sbml_met.cli import main

    points = tmp_path / "points.csv"
    pd.DataFrame({"su": [0.5, 1.0], "rb": [10.0, 20.0]}).to_csv(points, index=False)
    out = tmp_path / "table.parquet"
    rc = main(["sweep", "autoregulation", str(points), "--times", "1,5", "--workers", "1", "--out", str(out)])
    assert rc == 0
    table = pd.read_parquet(out)
    direct = sbml_met.sweep(sbml_met.models.load("autoregulation"), pd.read_csv(points), [1, 5], workers=1)
    pd.testing.assert_frame_equal(table.drop(columns="error"), direct.drop(columns="error"))
    assert main(["sweep", "toggle_switch", str(points), "--times", "1"]) == 2  # su is no toggle parameter
