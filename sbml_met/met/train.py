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

import contextlib
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
from .distributed import (agree, average_gradients, broadcast_parameters, distributed_device, replicas_agree,
                          world)

DEFAULT_MODEL = {k: METConfig.__dataclass_fields__[k].default for k in ("d_model", "n_layer", "n_head", "d_ff")}


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
    client: Any = None,
) -> MET:
    """Train a MET for ``network`` over the parameter ``box`` (SBML id -> (low, high)) and times
    ``(t_min, t_max)``; other parameters stay at the network's values. ``init_box`` optionally
    varies initial counts (species id -> (low, high)). ``init_from``: continue training the
    weights of an earlier MET of the same network, box and vocabulary. ``device``: "cuda",
    "cpu" or None (CUDA when available, else CPU); the returned MET lives on the CPU.
    ``client``: a ``dask.distributed.Client`` whose workers compute the teacher data (FSP
    solutions or SSA trajectories), all of it, whatever the time budget.
    Inside a ``torch.distributed`` process group (``sbml-met train --nproc N``, ``torchrun``
    or :func:`sbml_met.met.distributed.train_distributed`) every process trains one replica on
    batches of its own and gradients are averaged (data parallelism); all ranks return the
    same MET. Returns the trained MET; its validation figures obey the network's conservation
    laws; its ``meta["options"]`` hold every argument needed to train it again."""
    t_start = time.monotonic()
    options = _options(dict(locals()))
    rank, size = world()
    dev = resolve_device(device) if size == 1 or device is not None else distributed_device()
    if minutes <= 0:
        raise InvalidArgumentError(f"minutes must be > 0, got {minutes}")
    space = PromptSpace.build(network, box, times, init_box)
    progress = bool(sys.stderr.isatty() if progress is None else progress) and rank == 0
    with _torch_settings(threads) as n_threads:
        torch.manual_seed(seed)
        ctx = TrainContext(network=network, space=space, seed=int(seed),
                           deadline=t_start + 60.0 * minutes,
                           rng=np.random.default_rng(seed if size == 1 else [seed, rank]),
                           batch_size=int(batch_size), progress=progress, start=t_start, client=client)
        tch = get_teacher(teacher, **dict(teacher_options or {}))
        tch.prepare(ctx)
        t_teacher = time.monotonic() - t_start
        net = _initial_net(space, tch, model, init_from, ctx).to(dev)
        tch.to(dev)
        if size > 1:
            broadcast_parameters(net)
        # validation prompts: their own Sobol stream (uniform, log and log3 times mixed), never trained on
        vt, vx, vtt = space.sobol(n_validation, seed=seed + 7919, mode="mixed")
        vref = tch.reference(ctx, vt, vx, vtt)
        vfeat = torch.as_tensor(space.features(vt, vx, vtt), device=dev)
        masks = validation_masks(network, vx, net.config.vocab)
        net, log, val = _loop(net, tch, ctx, steps, lr, vfeat, vref, validate_every, progress, masks)
        if size > 1 and not replicas_agree(net):
            raise RuntimeError("data-parallel replicas diverged: their weights differ after training")
        net.cpu()
        ctx.log.extend(log)
        meta = {"teacher": teacher, "seed": int(seed), "minutes": float(minutes), "steps": len(log) and log[-1]["step"],
                "wall_seconds": time.monotonic() - t_start, "teacher_seconds": t_teacher, "threads": n_threads,
                "n_parameters": net.n_parameters(), "torch": str(torch.__version__), "device": str(dev),
                "processes": size, "options": options, **provenance()}
        val["validation_prompts"] = {"theta": vt.tolist(), "init": vx.tolist(), "time": vtt.tolist()}
        return MET(net, space, network, ctx.log, val, meta)


@contextlib.contextmanager
def _torch_settings(threads: int | None):
    """Fixed torch threads (when ``threads``) and deterministic algorithms while training; yields
    the thread count in use and restores the caller's settings afterwards."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield int(threads or old_threads)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _initial_net(space: PromptSpace, tch, model, init_from: MET | None, ctx: TrainContext) -> METNet:
    """A fresh network for the teacher's vocabulary, or ``init_from``'s weights to continue."""
    if init_from is None:
        return METNet(METConfig(n_prompt=space.n_prompt, vocab=tuple(tch.vocab), n_features=N_FEATURES,
                                **{**DEFAULT_MODEL, **dict(model or {})}))
    if init_from.space != space or tuple(init_from.config.vocab) != tuple(tch.vocab):
        raise InvalidArgumentError(
            f"init_from was trained on another box or vocabulary ({init_from.config.vocab} vs "
            f"{tuple(tch.vocab)}); fix the teacher's vocabulary (caps=/vocab= options)")
    net = METNet(init_from.config)
    net.load_state_dict(init_from.net.state_dict())
    ctx.log[:0] = list(init_from.log) + [{"event": "continued", "previous": init_from.meta}]
    return net


RUN_ONLY = ("network", "progress", "init_from", "device", "client", "t_start")  # not part of what is learnt


def _options(args: dict) -> dict:
    """Every training argument as plain data: ``train(network, **options)`` trains the MET again."""
    out = {k: v for k, v in args.items() if k not in RUN_ONLY}
    out["box"] = {k: [float(lo), float(hi)] for k, (lo, hi) in out["box"].items()}
    out["times"] = [float(t) for t in out["times"]]
    if out["init_box"]:
        out["init_box"] = {k: [int(lo), int(hi)] for k, (lo, hi) in out["init_box"].items()}
    for key in ("model", "teacher_options"):
        out[key] = dict(out[key]) if out[key] else None
    return out


def provenance() -> dict:
    """The package version and, in a git checkout, the commit (with "+dirty" for local changes)."""
    import subprocess
    from pathlib import Path

    from .. import __version__

    out = {"sbml_met": __version__, "commit": None}
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return out

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "sbml_met"))
        out["commit"] = (head + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


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
    size = world()[1]
    while True:
        now = time.monotonic()
        frac = step / steps if steps else (now - t0) / budget
        stop = bool((steps and step >= steps) or now >= ctx.deadline or frac >= 1)
        check = now - last_val >= validate_every
        if size > 1:  # rank 0's clock decides for all, so every replica takes the same steps
            stop, check, frac = agree(stop, check, frac)
        if stop:
            break
        scale = min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss, figure = tch.loss(net, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            average_gradients(net)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        ema = figure if ema is None else 0.98 * ema + 0.02 * figure
        if check:
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
