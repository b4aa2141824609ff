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
import copy
import math
import sys
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InvalidArgumentError
from ..metrics import hellinger
from .checkpoint import MET, marginals_of
from .model import METConfig, METNet
from .prompts import N_FEATURES, PromptSpace
from ._warn import user_stacklevel
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
    target: float | None = None,
    anchor: Mapping[str, float] | None = None,
    anchor_times=None,
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
    laws; its ``meta["options"]`` hold every argument needed to train it again.

    Accuracy-driven training (``target``, a mean marginal Hellinger distance): the loop checks
    the held-out prompts every ``validate_every`` seconds on an exponential moving average of
    the weights and stops as soon as their mean reaches 0.75 ``target`` (a margin for the
    estimate from a few dozen prompts; with ``anchor_times``, a few more box points at those times
    join them), no prompt's mean over species exceeds three times it (and, with ``anchor``, a
    parameter point such as the model's own values, the MET's error there at ``anchor_times``
    is at most half of what a validation against 10^4 trajectories detects: see
    :func:`detectability`); the learning rate stays constant after warm-up and halves when the
    held-out error stalls; ``minutes`` (or ``steps``) only caps the run. ``meta["reached"]``
    says whether the target was met; the best weights seen are returned either way."""
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
        n_drawn = len(vt)
        if anchor_times is not None and target is not None:  # and box points at the times the run reports
            vt, vx, vtt = _at_times(space, (vt, vx, vtt), anchor_times, max(2, n_validation // 12), seed + 104729)
        n_mean = len(vt)
        if target is not None:  # the box's corners at the last time: extremes that interior points miss
            last = float(np.max(anchor_times)) if anchor_times is not None else space.t_max
            vt, vx, vtt = (np.concatenate(pair) for pair in zip((vt, vx, vtt), _corners(space, last, seed + 31)))
        n_box = len(vt)
        if anchor is not None:  # the anchor point (e.g. the model's own values) at its times
            at = np.atleast_1d(np.asarray(anchor_times if anchor_times is not None else
                                          np.quantile([space.t_min, space.t_max], [0.1, 0.33, 0.66, 1.0]), float))
            theta_a, x_a = space.resolve(network, dict(anchor), None)
            vt = np.concatenate([vt, np.repeat(theta_a[None], len(at), 0)])
            vx = np.concatenate([vx, np.repeat(x_a[None], len(at), 0)])
            vtt = np.concatenate([vtt, at])
        vref = tch.reference(ctx, vt, vx, vtt)
        vfeat = torch.as_tensor(space.features(vt, vx, vtt), device=dev)
        masks = validation_masks(network, vx, net.config.vocab)
        goal = None if target is None else Goal(float(target), n_box, n_drawn, n_mean)
        net, log, val = _loop(net, tch, ctx, steps, lr, vfeat, vref, validate_every, progress, masks, goal)
        if size > 1 and not replicas_agree(net):
            raise RuntimeError("data-parallel replicas diverged: their weights differ after training")
        net.cpu()
        ctx.log.extend(log)
        steps_done = len(log) and log[-1]["step"]
        if not steps_done:
            warnings.warn(f"the MET of '{network.name}' took no training step: the teacher ({teacher}) used the "
                          f"whole budget of {minutes:g} minutes; give more minutes, a narrower box or fewer "
                          "teacher prompts", RuntimeWarning, stacklevel=user_stacklevel())
        before = 0 if init_from is None else int(init_from.meta.get("total_steps", init_from.meta.get("steps", 0)))
        meta = {"teacher": teacher, "seed": int(seed), "minutes": float(minutes), "steps": steps_done,
                "total_steps": before + int(steps_done),
                "wall_seconds": time.monotonic() - t_start, "teacher_seconds": t_teacher, "threads": n_threads,
                "n_parameters": net.n_parameters(), "torch": str(torch.__version__), "device": str(dev),
                "processes": size, "options": options, **provenance()}
        if goal is not None:
            meta.update({"target": float(target), "reached": bool(val.get("reached"))})
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
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, encoding="utf-8", timeout=5).stdout.strip()

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


def validate(net: METNet, vfeat: torch.Tensor, vref, masks=None, marginals: list | None = None) -> np.ndarray:
    """Marginal Hellinger distances (prompts, species) of the net against reference marginals
    (``masks``: one ConservationMask per prompt, or None). ``marginals``, a list, receives the
    net's marginals per prompt."""
    net.eval()
    out = np.zeros((len(vfeat), net.config.n_species))
    for i in range(len(vfeat)):
        m = marginals_of(net, vfeat[i : i + 1], mask=masks[i] if masks else None)
        if marginals is not None:
            marginals.append(m)
        for s, ref in enumerate(vref[i]):
            out[i, s] = hellinger(m[s], ref)
    net.train()
    return out


Z_CRITICAL = 4.0  # |z| at which run's validation flags a mean (Bonferroni over its checks, alpha 1e-3)
KS_CRITICAL = 2.3  # sqrt(n) x KS distance at which it flags a marginal


def _corners(space: PromptSpace, t: float, seed: int, limit: int = 16) -> tuple:
    """The box's corners (all 2^F up to ``limit``, else ``limit`` drawn ones), each at time ``t``
    from the lowest initial counts: the extreme distributions of the box, which interior held-out
    points see only from afar."""
    F = len(space.free)
    if F == 0:
        return np.zeros((0, 0)), np.zeros((0, len(space.species))), np.zeros(0)
    theta = space.corners(limit, seed)
    if 2**F > limit:  # drawn corners may repeat
        theta = np.unique(theta, axis=0)
    return theta, np.tile(np.asarray(space.init_low), (len(theta), 1)), np.full(len(theta), float(t))


def _at_times(space: PromptSpace, prompts: tuple, times, points: int, seed: int) -> tuple:
    """``prompts`` and ``points`` more Sobol points of the box, each at every one of ``times``: the
    held-out error then covers the times a run reports, not only times drawn over the window."""
    at = np.atleast_1d(np.asarray(times, float))
    bt, bx, _ = space.sobol(points, seed=seed, mode="mixed")
    vt, vx, vtt = prompts
    return (np.concatenate([vt, np.repeat(bt, len(at), 0)]), np.concatenate([vx, np.repeat(bx, len(at), 0)]),
            np.concatenate([vtt, np.tile(at, points)]))


def detectability(model: np.ndarray, exact: np.ndarray, n: int = 10_000) -> float:
    """How visible the error of the marginal ``model`` is against the ``exact`` one to a
    validation with ``n`` reference trajectories: the largest of |mean error| / (Z_CRITICAL
    standard errors), |variance error| / (Z_CRITICAL standard errors of a sample variance) and
    sqrt(n) KS distance / KS_CRITICAL. Above 1 such a validation flags it (about half the time);
    below 0.5 the reference's own noise rarely carries it over."""
    V = max(len(model), len(exact))
    p, q = np.zeros(V), np.zeros(V)
    p[: len(model)], q[: len(exact)] = model, exact
    p, q = p / max(p.sum(), 1e-300), q / max(q.sum(), 1e-300)
    x = np.arange(V, dtype=float)
    mq, mp = q @ x, p @ x
    vq, vp = q @ (x - mq) ** 2, p @ (x - mp) ** 2
    if vq <= 0:
        return 0.0 if abs(mp - mq) < 1e-9 else float("inf")
    m4 = q @ (x - mq) ** 4
    z_mean = abs(mp - mq) / math.sqrt(vq / n)
    z_var = abs(vp - vq) / math.sqrt(max(m4 - vq**2, 1e-300) / n)
    ks = float(np.abs(np.cumsum(p) - np.cumsum(q)).max()) * math.sqrt(n)
    return float(max(z_mean / Z_CRITICAL, z_var / Z_CRITICAL, ks / KS_CRITICAL))


@dataclass(frozen=True)
class Goal:
    """Stop training once the first ``n_box`` validation prompts' mean marginal Hellinger is at
    most ``target`` and the error at the later (anchor) prompts is at most ``visible`` of what a
    validation with ``n`` trajectories detects."""

    target: float
    n_box: int
    n_drawn: int | None = None  # box prompts before n_drawn: drawn times; from it to n_mean: the run's times
    n_mean: int | None = None  # prompts from n_mean to n_box (the box's corners) count for the worst, not the mean
    visible: float = 0.5
    n: int = 10_000
    worst: float = 3.0  # no held-out prompt's mean over species beyond worst x target (no region left out)
    margin: float = 0.75  # the held-out mean must reach margin x target: a few dozen prompts estimate the box's mean

    @property
    def mean_end(self) -> int:
        """End of the held-out prompts whose mean counts (the box's corners after it do not)."""
        return self.n_box if self.n_mean is None else self.n_mean

    def score(self, h: np.ndarray, marginals: list, vref) -> dict:
        # the box's mean, and (where given) the mean at the run's report times on its own: errors that
        # gather at one report time must not hide in the mean over times drawn across the window
        end = self.mean_end
        split = self.n_drawn if self.n_drawn is not None and 0 < self.n_drawn < end else end
        box = max(float(h[:split].mean()), float(h[split:end].mean()) if split < end else 0.0)
        worst = float(h[: self.n_box].mean(axis=1).max()) / self.target
        seen = [detectability(m, r, self.n) for ms, rs in zip(marginals[self.n_box :], vref[self.n_box :])
                for m, r in zip(ms, rs)]
        out = {"hellinger_box": box, "hellinger_worst_prompt": worst * self.target,
               "anchor_detectability": max(seen) if seen else 0.0}
        if len(h) > self.n_box:
            out.update({"anchor_hellinger_mean": float(h[self.n_box :].mean()),
                        "anchor_hellinger_max": float(h[self.n_box :].max())})
        out["reached"] = bool(box <= self.margin * self.target and out["anchor_detectability"] <= self.visible
                              and worst <= self.worst)
        out["badness"] = max(box / (self.margin * self.target), out["anchor_detectability"] / self.visible,
                             worst / self.worst)
        return out


def _loop(net, tch, ctx, steps, lr, vfeat, vref, validate_every, progress, masks=None, goal: Goal | None = None):
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4, betas=(0.9, 0.98))
    warm = 200 if goal is None else 50  # accuracy-driven runs on a CPU cannot spare long warm-ups
    budget = max(ctx.deadline - time.monotonic(), 1.0)
    t0 = time.monotonic()
    total = steps if steps else None
    bar = tqdm(total=total or int(budget), disable=not progress, unit="step" if total else "s",
               desc=f"MET {ctx.network.name} ({tch.name})", leave=False)
    log, step, last_val, ema = [], 0, t0, None
    hval = float("nan")
    net.train()
    size = world()[1]
    # accuracy-driven: constant rate (halved when the held-out error stalls), judged on an EMA of the weights
    avg = copy.deepcopy(net) if goal is not None else None
    best, best_state, rate, stalls = None, None, 1.0, 0
    while True:
        now = time.monotonic()
        frac = step / steps if steps else (now - t0) / budget
        stop = bool((steps and step >= steps) or now >= ctx.deadline or frac >= 1)
        check = now - last_val >= validate_every
        if size > 1:  # rank 0's clock decides for all, so every replica takes the same steps
            stop, check, frac = agree(stop, check, frac)
        if stop:
            break
        if goal is None:
            scale = min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        else:
            scale = min(1.0, (step + 1) / warm) * rate
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
        if avg is not None:
            _ema_update(avg, net, min(0.995, (1 + step) / (10 + step)))
        ema = figure if ema is None else 0.98 * ema + 0.02 * figure
        if check:
            ms = []
            h = validate(avg if avg is not None else net, vfeat, vref, masks, ms)
            hval = float(h.mean())
            last_val = time.monotonic()
            entry = {"step": step, "seconds": last_val - ctx.start, "loss": ema, "val_hellinger": hval,
                     "val_hellinger_max": float(h.max()), "lr": lr * scale}
            if goal is not None:
                sc = goal.score(h, ms, vref)
                entry.update({k: v for k, v in sc.items() if k != "badness"})
                if best is None or sc["badness"] < best:
                    stalls = 0 if best is None or sc["badness"] < 0.97 * best else stalls + 1
                    best, best_state = sc["badness"], copy.deepcopy(avg.state_dict())
                else:
                    stalls += 1
                if stalls >= 3 and rate > 0.05:  # no progress in three checks: halve the rate
                    rate, stalls = rate / 2, 0
                stop_now = sc["reached"]
                if size > 1:
                    stop_now = agree(stop_now, False, 0.0)[0]
            log.append(entry)
            if goal is not None and stop_now:
                break
        if progress:
            bar.set_postfix(loss=f"{ema:.4f}", hellinger=f"{hval:.4f}", refresh=False)
            bar.n = step if total else int(time.monotonic() - t0)
            bar.refresh() if step % 20 == 0 else None
    bar.close()
    if avg is not None:
        if best_state is not None:
            ms = []
            h_avg = validate(avg, vfeat, vref, masks, ms)
            if goal.score(h_avg, ms, vref)["badness"] > best:
                avg.load_state_dict(best_state)
        net = avg
    ms = []
    h = validate(net, vfeat, vref, masks, ms)
    entry = {"step": step, "seconds": time.monotonic() - ctx.start, "loss": ema, "val_hellinger": float(h.mean()),
             "val_hellinger_max": float(h.max()), "lr": 0.0}
    val = {"hellinger_mean": float(h.mean()), "hellinger_median": float(np.median(h)),
           "hellinger_max": float(h.max()), "hellinger": h.tolist(),
           "reference": "exact" if tch.name in ("fsp", "poisson") or ctx.state_space is not None else "ssa"}
    if goal is not None:
        sc = goal.score(h, ms, vref)
        sc.pop("badness")
        entry.update(sc)
        end = goal.mean_end
        hb = h[:end]  # the held-out box prompts; the corners after them count only for the worst prompt
        val.update({"hellinger_mean": float(hb.mean()), "hellinger_median": float(np.median(hb)),
                    "hellinger_max": float(h[: goal.n_box].max()), "hellinger": hb.tolist(), "target": goal.target,
                    **sc, "corner_hellinger": h[end : goal.n_box].tolist(),
                    "anchor_hellinger": h[goal.n_box :].tolist()})
    log.append(entry)
    if val["reference"] == "ssa":
        val["noise_floor"] = ssa_noise_floor(vref[: goal.n_box] if goal else vref, getattr(tch, "n_reference", 4000))
    net.eval()
    return net, log, val


@torch.no_grad()
def _ema_update(avg: METNet, net: METNet, decay: float) -> None:
    for a, p in zip(avg.parameters(), net.parameters()):
        a.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    for a, b in zip(avg.buffers(), net.buffers()):
        a.copy_(b)
