"""Training a MET: ``train(network, box, times, teacher="fsp", minutes=15, seed=0) -> MET``.

Prompts come from a scrambled Sobol sequence (uniform, log-uniform and log-uniform over the upper
three decades, in turn, where a box spans decades). The teacher (see :mod:`sbml_met.met.teachers`) supplies the loss; the loop runs
AdamW with warm-up and cosine decay until the time budget (or ``steps``) is spent, and reports the
loss and the marginal Hellinger distance on fixed, seeded validation prompts (a Sobol stream of
their own, never trained on) in a tqdm bar and in the training log.

Determinism: seeds for numpy and torch, deterministic torch algorithms and a fixed number of torch
threads make two runs with the same seed and the same ``steps`` give identical weights on one
machine. With only a time budget the run is identical up to the step where the budget ends it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InvalidArgumentError
from ..metrics import hellinger
from .checkpoint import MET, marginals_of
from .model import METConfig, METNet
from .prompts import N_FEATURES, PromptSpace
from .teachers import TrainContext, get_teacher
from . import rl as _rl  # noqa: E402,F401  registers the RL teachers "fsp-reward" and "rlmf" (issue 7)

DEFAULT_MODEL = {"d_model": 64, "n_layer": 3, "n_head": 4, "d_ff": 256}


def train(
    network,
    box: Mapping[str, tuple[float, float]],
    times,
    teacher: str = "fsp",
    minutes: float = 15,
    seed: int = 0,
    init_box: Mapping[str, tuple[int, int]] | None = None,
    *,
    steps: int | None = None,
    model: Mapping[str, Any] | None = None,
    teacher_options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    lr: float = 2e-3,
    n_validation: int = 16,
    validate_every: float = 30.0,
    threads: int | None = 1,
    progress: bool | None = None,
    init_from: MET | None = None,
    device: str | torch.device | None = None,
) -> MET:
    """Train a MET for ``network`` over the parameter ``box`` (SBML id -> (low, high)) and times
    ``(t_min, t_max)``; other parameters stay at the network's values. ``init_box`` optionally
    varies initial counts (species id -> (low, high)). ``init_from``: continue training the
    weights of an earlier MET of the same network, box and vocabulary. ``device``: "cuda",
    "cpu" or None (CUDA when available, else CPU); the returned MET lives on the CPU.
    Returns the trained MET; its validation figures obey the network's conservation laws."""
    t_start = time.monotonic()
    dev = resolve_device(device)
    if minutes <= 0:
        raise InvalidArgumentError(f"minutes must be > 0, got {minutes}")
    space = PromptSpace.build(network, box, times, init_box)
    if progress is None:
        progress = sys.stderr.isatty()
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        ctx = TrainContext(network=network, space=space, seed=int(seed),
                           deadline=t_start + 60.0 * minutes, rng=np.random.default_rng(seed),
                           batch_size=int(batch_size), progress=bool(progress), start=t_start)
        tch = get_teacher(teacher, **dict(teacher_options or {}))
        tch.prepare(ctx)
        t_teacher = time.monotonic() - t_start
        if init_from is not None:
            if init_from.space != space or tuple(init_from.config.vocab) != tuple(tch.vocab):
                raise InvalidArgumentError(
                    f"init_from was trained on another box or vocabulary ({init_from.config.vocab} vs "
                    f"{tuple(tch.vocab)}); fix the teacher's vocabulary (caps=/vocab= options)")
            cfg = init_from.config
            net = METNet(cfg)
            net.load_state_dict(init_from.net.state_dict())
            ctx.log[:0] = list(init_from.log) + [{"event": "continued", "previous": init_from.meta}]
        else:
            cfg = METConfig(n_prompt=space.n_prompt, vocab=tuple(tch.vocab), n_features=N_FEATURES,
                            **{**DEFAULT_MODEL, **dict(model or {})})
            net = METNet(cfg)
        net.to(dev)
        tch.to(dev)
        # validation prompts: their own Sobol stream (uniform, log and log3 times mixed), never trained on
        vt, vx, vtt = space.sobol(n_validation, seed=seed + 7919, mode="mixed")
        vref = tch.reference(ctx, vt, vx, vtt)
        vfeat = torch.as_tensor(space.features(vt, vx, vtt), device=dev)
        masks = validation_masks(network, vx, cfg.vocab)
        net, log, val = _loop(net, tch, ctx, steps, lr, vfeat, vref, validate_every, progress, masks)
        net.cpu()
        wall = time.monotonic() - t_start
        ctx.log.extend(log)
        meta = {"teacher": teacher, "seed": int(seed), "minutes": float(minutes), "steps": len(log) and log[-1]["step"],
                "wall_seconds": wall, "teacher_seconds": t_teacher, "threads": int(threads or old_threads),
                "n_parameters": net.n_parameters(), "torch": str(torch.__version__), "device": str(dev)}
        val["validation_prompts"] = {"theta": vt.tolist(), "init": vx.tolist(), "time": vtt.tolist()}
        return MET(net, space, network, ctx.log, val, meta)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to train on: CUDA when available for None, else the CPU; asking for
    "cuda" on a machine without one raises InvalidArgumentError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidArgumentError(f"unknown device {device!r} ({e}); use 'cuda', 'cpu' or None") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device {device!r}: no CUDA GPU is available here; use 'cpu' or None")
    if dev.type not in ("cuda", "cpu"):
        raise InvalidArgumentError(f"device {device!r}: only 'cuda' and 'cpu' are supported")
    return dev


def validation_masks(network, x0s: np.ndarray, vocab) -> list | None:
    """One ConservationMask per validation prompt's initial counts (None without laws)."""
    from ..conservation import ConservationMask, conservation_laws

    laws = conservation_laws(network)
    if not len(laws):
        return None
    return [ConservationMask(laws, np.rint(x), tuple(vocab)) for x in x0s]


def ssa_noise_floor(refs, n: int, draws: int = 8, seed: int = 0) -> float:
    """Mean marginal Hellinger distance of an ``n``-sample histogram from the reference
    histograms ``refs`` (prompts x species) to them: what an SSA reference cannot resolve."""
    rng = np.random.default_rng(seed)
    out = [hellinger(rng.multinomial(n, p / p.sum()) / n, p) for row in refs for p in row for _ in range(draws)]
    return float(np.mean(out)) if out else float("nan")


def validate(net: METNet, vfeat: torch.Tensor, vref, masks=None) -> np.ndarray:
    """Marginal Hellinger distances (prompts, species) of the net against reference marginals
    (``masks``: one ConservationMask per prompt, or None)."""
    net.eval()
    out = np.zeros((len(vfeat), net.config.n_species))
    for i in range(len(vfeat)):
        m = marginals_of(net, vfeat[i : i + 1], mask=masks[i] if masks else None)
        for s, ref in enumerate(vref[i]):
            out[i, s] = hellinger(m[s], ref)
    net.train()
    return out


def _loop(net, tch, ctx, steps, lr, vfeat, vref, validate_every, progress, masks=None):
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4, betas=(0.9, 0.98))
    warm = 200
    budget = max(ctx.deadline - time.monotonic(), 1.0)
    t0 = time.monotonic()
    total = steps if steps else None
    bar = tqdm(total=total or int(budget), disable=not progress, unit="step" if total else "s",
               desc=f"MET {ctx.network.name} ({tch.name})", leave=False)
    log, step, last_val, ema = [], 0, t0, None
    hval = float("nan")
    net.train()
    while True:
        now = time.monotonic()
        frac = step / steps if steps else (now - t0) / budget
        if (steps and step >= steps) or now >= ctx.deadline or frac >= 1:
            break
        scale = min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss, figure = tch.loss(net, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        ema = figure if ema is None else 0.98 * ema + 0.02 * figure
        if now - last_val >= validate_every:
            h = validate(net, vfeat, vref, masks)
            hval = float(h.mean())
            last_val = time.monotonic()
            log.append({"step": step, "seconds": last_val - ctx.start, "loss": ema, "val_hellinger": hval,
                        "val_hellinger_max": float(h.max()), "lr": lr * scale})
        if progress:
            bar.set_postfix(loss=f"{ema:.4f}", hellinger=f"{hval:.4f}", refresh=False)
            bar.n = step if total else int(time.monotonic() - t0)
            bar.refresh() if step % 20 == 0 else None
    bar.close()
    h = validate(net, vfeat, vref, masks)
    log.append({"step": step, "seconds": time.monotonic() - ctx.start, "loss": ema, "val_hellinger": float(h.mean()),
                "val_hellinger_max": float(h.max()), "lr": 0.0})
    val = {"hellinger_mean": float(h.mean()), "hellinger_median": float(np.median(h)),
           "hellinger_max": float(h.max()), "hellinger": h.tolist(),
           "reference": "exact" if tch.name in ("fsp", "poisson") or ctx.state_space is not None else "ssa"}
    if val["reference"] == "ssa":
        val["noise_floor"] = ssa_noise_floor(vref, getattr(tch, "n_reference", 4000))
    net.eval()
    return net, log, val
