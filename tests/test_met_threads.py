"""MET queries run small work on one torch thread and give the user's setting back."""

from __future__ import annotations

import torch

import sbml_met.met.checkpoint as checkpoint
from sbml_met.met import pretrained
from sbml_met.met._threads import SMALL_WORK, torch_threads


def test_sample_runs_small_work_on_one_thread_and_restores_the_setting(monkeypatch):
    met = pretrained("toggle_switch")
    seen = []
    real = checkpoint.ancestral_sample

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "ancestral_sample", spy)
    old = torch.get_num_threads()
    with torch_threads(2):
        a = met.sample(1000, 5.0, seed=3)
        assert torch.get_num_threads() == 2
        met.sample(SMALL_WORK + 1, 5.0, seed=3)
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == old
    assert seen == [1, 2]
    b = met.sample(1000, 5.0, seed=3)  # threads never change the numbers
    assert (a == b).all()
