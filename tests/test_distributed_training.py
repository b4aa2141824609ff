"""MET training beyond one process: teacher data on Dask workers (``train(..., client=)``) and
data-parallel training with torch.distributed (``train_distributed``, ``sbml-met train --nproc``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from sbml_met import met as met_pkg
from sbml_met import models
from sbml_met.metrics import hellinger

distributed = pytest.importorskip("distributed")

TINY = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64}


def poisson_net():
    """Immigration-death with death rate 1: X(t) ~ Poisson(k1 (1 - e^-t)) from X(0) = 0."""
    return models.load("birth_death").with_parameters(k2=1.0)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))


@pytest.mark.parametrize("teacher, options", [
    ("fsp", {"n_prompts": 64, "times_per_prompt": 4, "chunk": 16, "method": "batched"}),
    ("fsp", {"n_prompts": 12, "times_per_prompt": 3, "method": "pointwise", "workers": 1}),
    ("ssa", {"n_prompts": 2048, "times_per_trajectory": 4, "chunk": 512, "n_reference": 500}),
])
def test_teacher_data_on_dask_workers_equals_local(client, teacher, options):
    """The same seed gives the same teacher data, hence the same weights, on Dask or here."""
    kw = dict(teacher=teacher, minutes=5, seed=2, steps=12, model=TINY, validate_every=1e9, progress=False,
              teacher_options=options, n_validation=2, batch_size=64)
    here = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), **kw)
    there = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), client=client, **kw)
    assert here.config.vocab == there.config.vocab
    assert _same_weights(here, there)
    assert here.meta["options"]["teacher_options"] == options


def test_two_process_ddp_training_loads_and_samples(tmp_path):
    """Two gloo ranks train one MET (replicas checked bit-identical at the end); the checkpoint
    loads and samples, and matches the exact Poisson law."""
    from sbml_met.met.distributed import train_distributed

    met = train_distributed(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), nproc=2, teacher="poisson",
                            minutes=3, seed=0, steps=400, model=TINY, batch_size=128, lr=3e-3, n_validation=8,
                            validate_every=1e9, progress=False,
                            teacher_options={"n_prompts": 256, "times_per_prompt": 8})
    assert met.meta["processes"] == 2 and met.meta["steps"] == 400
    path = met.save(tmp_path / "ddp.met")
    loaded = met_pkg.load(path)
    assert _same_weights(met, loaded)
    m = loaded.marginal("X", 2.0, k1=5.0).to_numpy()
    assert hellinger(m, poisson.pmf(np.arange(len(m)), 5.0 * (1 - np.exp(-2.0)))) < 0.05
    x = loaded.sample(4000, 2.0, k1=5.0, seed=1)
    assert x.shape == (4000, 1)
    assert abs(x.mean() - 5.0 * (1 - np.exp(-2.0))) < 0.15


def test_train_cli_nproc_and_its_refusals(tmp_path, capsys):
    from sbml_met.cli import main

    out = tmp_path / "bd.met"
    args = ["train", "birth_death", "--box", "k1=2:8", "--times", "0:4", "--teacher", "poisson", "--steps", "20"]
    assert main(args + ["--nproc", "2", "--out", str(out)]) == 0
    met = met_pkg.load(out)
    assert met.meta["processes"] == 2 and met.meta["options"]["steps"] == 20
    assert main(args + ["--nproc", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "x.met")]) != 0
    assert "--scheduler computes the teacher data for one training process" in capsys.readouterr().err
    assert not (tmp_path / "x.met").exists()


def test_checkpoint_metadata_retrains_the_same_met():
    """``meta["options"]`` holds every training argument: training again from it gives the same weights."""
    a = met_pkg.train(poisson_net(), {"k1": (2.0, 8.0)}, (0.0, 4.0), teacher="poisson", minutes=2, seed=5,
                      steps=10, model=TINY, validate_every=1e9, progress=False, n_validation=2,
                      teacher_options={"n_prompts": 64, "times_per_prompt": 4})
    assert a.meta["sbml_met"] and "commit" in a.meta
    b = met_pkg.train(poisson_net(), progress=False, **a.meta["options"])
    assert _same_weights(a, b)


@pytest.mark.slow
def test_torchrun_gives_the_same_weights_as_nproc(tmp_path):
    """README: `--nproc 2` and `torchrun --nproc-per-node 2 -m sbml_met train ...` give the same weights."""
    import subprocess
    import sys
    from pathlib import Path

    from sbml_met.cli import main

    args = ["train", "birth_death", "--box", "k1=2:8", "--times", "0:4", "--teacher", "poisson", "--steps", "20",
            "--seed", "3"]
    assert main(args + ["--nproc", "2", "--out", str(tmp_path / "nproc.met")]) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    run = subprocess.run(launcher + ["--standalone", "--nproc-per-node", "2", "-m", "sbml_met", *args,
                                     "--out", str(tmp_path / "torchrun.met")],
                         capture_output=True, text=True, encoding="utf-8", timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = met_pkg.load(tmp_path / "nproc.met"), met_pkg.load(tmp_path / "torchrun.met")
    assert a.meta["processes"] == b.meta["processes"] == 2 and b.meta["steps"] == 20
    assert _same_weights(a, b)
