"""Teachers: where a MET's training signal comes from. A registry so new teachers (the RL teachers
"rlmf" and "fsp-reward") plug into :func:`sbml_met.met.train` without touching the loop.

A teacher is a class with ``prepare(ctx)`` (build data, fix the count vocabulary), ``vocab``
(counts 0..V-1 per species), ``loss(net, ctx)`` -> (loss tensor, KL/NLL figure for the log) and
``reference(ctx, theta, x0, t)`` -> exact (or sampled) marginals for validation prompts.

* ``"fsp"``: distillation from exact CME distributions, loss KL(p_fsp || p_met). Each (prompt, time)
  is split into its length-(S-1) prefixes u with weight P(u); a row is drawn with probability
  P(u) and its targets are the exact conditionals p(x_j | u_<j) of every position j (the last one
  p(x_S | u)), so the loss is an unbiased, low-variance estimate of the joint KL at the cost of a
  few rows per prompt (2 for a gene + protein model). Small state spaces are integrated for all
  prompts side by side; larger ones (e.g. the toggle switch) by ``solve_fsp`` per parameter point
  on worker threads, with an optional declared symmetry doubling the data.
* ``"ssa"``: maximum likelihood on exact SSA samples, for state spaces beyond FSP.
* ``"poisson"``: the exact answer of an immigration-death network (one species; Poisson plus a
  binomial for surviving initial molecules), a tiny teacher for tests.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import binom, poisson

from ..errors import InvalidArgumentError, StateSpaceTooLargeError
from ..parallel import child_seeds
from ..support import check_support
from ._cme import StateSpace, batched_solve, ssa_batch
from ._warn import user_stacklevel
from .model import VocabularyOverflowWarning
from .prompts import PromptSpace
from .vocab import count_vocabulary

TEACHERS: dict[str, Callable[..., "Teacher"]] = {}


def register_teacher(name: str):
    """Class decorator: make a teacher available as ``train(..., teacher=name)``."""
    def deco(cls):
        TEACHERS[name] = cls
        cls.name = name
        return cls
    return deco


def get_teacher(name: str, **options) -> "Teacher":
    if name not in TEACHERS:
        raise InvalidArgumentError(f"unknown teacher {name!r}; choose one of: {', '.join(TEACHERS)}")
    return TEACHERS[name](**options)


@dataclass
class TrainContext:
    """What a teacher sees: the network, prompt space, seed, budget and generators."""

    network: Any
    space: PromptSpace
    seed: int
    deadline: float
    rng: np.random.Generator
    batch_size: int = 512
    log: list = field(default_factory=list)
    progress: bool = False
    start: float = 0.0
    state_space: Any = None
    client: Any = None  # a dask.distributed.Client: teacher data computed on its workers

    def params_dict(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        return {p: theta[:, i] for i, p in enumerate(self.space.free)}


class Teacher:
    """Base class; see the module docstring for the protocol."""

    name = ""
    vocab: tuple[int, ...] = ()

    def prepare(self, ctx: TrainContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, net, ctx: TrainContext) -> tuple[torch.Tensor, float]:  # pragma: no cover
        raise NotImplementedError

    def reference(self, ctx: TrainContext, theta, x0, t) -> list[list[np.ndarray]]:
        """Marginals per validation prompt and species (default: private FSP, else SSA)."""
        return fsp_or_ssa_reference(ctx, theta, x0, t)

    def to(self, device) -> "Teacher":
        """Move the training data (tensors held by the teacher and its row stores) to ``device``."""
        _move(self, torch.device(device))
        return self


def _move(obj, device: torch.device, depth: int = 0) -> None:
    """Move the tensor attributes (and lists of tensors) of ``obj`` and of its own helper
    objects (one level down) to ``device``, in place."""
    for k, v in list(vars(obj).items()):
        if isinstance(v, torch.Tensor):
            setattr(obj, k, v.to(device))
        elif isinstance(v, list) and v and all(isinstance(a, torch.Tensor) for a in v):
            setattr(obj, k, [a.to(device) for a in v])
        elif depth == 0 and type(v).__module__ == __name__ and hasattr(v, "__dict__"):
            _move(v, device, depth + 1)


# ------------------------------------------------------------------------------- helpers
def estimate_caps(ctx: TrainContext, n: int = 2048, margin: float = 3.0) -> np.ndarray:
    """Upper count bounds per species from exact SSA over the box, every corner included (the
    largest counts sit where production rates are high and degradation rates low, a mixed
    corner: up to 2^7 corners, else 128 drawn at random)."""
    net, space = ctx.network, ctx.space
    theta, x0, _ = space.sobol(n, seed=ctx.seed + 104729, mode="mixed")
    corners = space.corners(128, ctx.seed + 11)
    corner = np.concatenate([np.asarray(space.high)[None, :], corners]).repeat(max(1, 128 // len(corners)), axis=0)
    theta = np.concatenate([theta, corner])
    x0 = np.concatenate([x0, np.asarray(space.init_high)[None, :].repeat(len(corner), axis=0)])
    K = 16
    rec = np.linspace(space.t_min, space.t_max, K)[None, :].repeat(len(theta), axis=0)
    out = ssa_batch(net, ctx.params_dict(theta), x0, rec, np.random.default_rng(ctx.seed + 7))
    mx = np.maximum(out.max(axis=(0, 1)), np.asarray(space.init_high))
    caps = count_vocabulary(mx, net.dynamic_species, sigmas=margin, pad=5) - 1
    return np.minimum(caps, conserved_bounds(net, space.init_high))


def conserved_bounds(network, x0_high) -> np.ndarray:
    """The largest count each species can reach under the network's conservation laws with
    nonnegative coefficients (E + ES = 5 bounds both by 5), from the largest initial counts;
    int64 max where no such law holds a species."""
    from ..conservation import conservation_laws

    bound = np.full(len(network.species), np.iinfo(np.int64).max, dtype=np.int64)
    laws = conservation_laws(network)
    for row, total in zip(laws.matrix, laws.totals_of(np.asarray(x0_high, float))):
        if np.all(row >= 0):
            on = row > 0
            bound[on] = np.minimum(bound[on], int(total) // row[on])
    return bound


def fsp_or_ssa_reference(ctx: TrainContext, theta, x0, t, n_ssa: int = 4000) -> list[list[np.ndarray]]:
    """Exact marginals by the private FSP when the state space is small, else SSA histograms."""
    space = ctx.state_space
    S = ctx.network.n_species
    refs = []
    if space is not None:
        for i in range(len(theta)):
            p0 = np.zeros(space.n)
            p0[space.index(x0[i][None, :].astype(np.int64))[0]] = 1.0
            p = space.solve({k: v[i] for k, v in ctx.params_dict(theta).items()}, p0, np.array([t[i]]))[0]
            refs.append([np.bincount(space.states[:, s], weights=p) for s in range(S)])
        return refs
    m = len(theta)
    rep = np.repeat(np.arange(m), n_ssa)
    out = ssa_batch(ctx.network, ctx.params_dict(theta[rep]), x0[rep], t[rep][:, None],
                    np.random.default_rng(ctx.seed + 31337))[:, 0, :].astype(np.int64)
    for i in range(m):
        block = out[i * n_ssa : (i + 1) * n_ssa]
        refs.append([np.bincount(block[:, s]) / n_ssa for s in range(S)])
    return refs


def run_chunks(ctx: TrainContext, fn: Callable[[Any], Any], tasks: list, share: float, what: str) -> list:
    """``[fn(task) for task in tasks]``, in order. With ``ctx.client`` every task runs on the Dask
    workers (a lost worker's tasks rerun); here, the loop stops once ``share`` of the time budget
    is spent, with a warning, so that training keeps its time. ``fn`` must be a module-level
    function of picklable tasks."""
    if ctx.client is not None:
        from ..parallel import map_chunks

        return map_chunks(fn, tasks, client=ctx.client, progress=ctx.progress, desc=what)
    until = ctx.start + share * max(ctx.deadline - ctx.start, 1)
    out = []
    for i, task in enumerate(tasks):
        out.append(fn(task))
        if i + 1 < len(tasks) and time.monotonic() > until:
            warnings.warn(f"{what} stopped after {i + 1} of {len(tasks)} chunks to keep the time budget "
                          "for training", stacklevel=user_stacklevel())
            break
    return out


def sequence_cross_entropy(log_probs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Per row, the cross-entropy of every position's exact target conditional (B, V_j) under
    the net's log-conditionals (B, V_j): the distillation loss of both row stores."""
    return -sum((t * lp).sum(dim=1) for t, lp in zip(targets, log_probs))


class _Rows:
    """Distillation rows: prompt features per item, prefixes, row weights, dense last conditionals,
    and (``pre_tgt``) the exact conditionals p(x_j | x_<j = u_<j) of each prefix position, which
    replace the one-sample term -log q(u_j) by its exact expectation (same mean, less variance)."""

    def __init__(self, feats, item, pre, w, tgt, ent, pre_tgt):
        self.pre_tgt = [torch.as_tensor(np.ascontiguousarray(t), dtype=torch.float32) for t in pre_tgt]
        self.feats = torch.as_tensor(np.ascontiguousarray(feats))
        self.item = np.asarray(item, dtype=np.int64)
        self.pre = torch.as_tensor(np.ascontiguousarray(pre), dtype=torch.long)
        self.w = np.asarray(w, dtype=float)
        self.tgt = torch.as_tensor(np.ascontiguousarray(tgt), dtype=torch.float32)
        self.ent = torch.as_tensor(np.asarray(ent, dtype=float) / np.maximum(self.w, 1e-300), dtype=torch.float32)
        self.cdf = np.cumsum(self.w)
        self.n_items = len(feats)

    def batch_loss(self, net, rng: np.random.Generator, B: int) -> tuple[torch.Tensor, float]:
        u = rng.random(B) * self.cdf[-1]
        idx = np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.cdf) - 1)
        f = self.feats[self.item[idx]]
        pre = self.pre[idx]
        ce = sequence_cross_entropy(net.logits(f, pre), [t[idx] for t in self.pre_tgt] + [self.tgt[idx]])
        loss = ce.mean()
        kl = float((ce.detach() - self.ent[idx]).mean()) * self.cdf[-1] / self.n_items
        return loss, kl


def _max_exit_rates(space: StateSpace, params: dict[str, np.ndarray], chunk: int = 256) -> np.ndarray:
    """Largest total exit rate over the state space, per parameter point (sets the RK4 step)."""
    n = len(next(iter(params.values()))) if params else 1
    out = np.empty(n)
    for a in range(0, n, chunk):
        p = {k: np.asarray(v[a : a + chunk], float)[:, None] for k, v in params.items()}
        r = np.asarray(space.network.propensities(space.states, 0.0, p))
        out[a : a + chunk] = r.sum(axis=-1).max(axis=-1)
    return out


def prefix_conditionals(item: np.ndarray, pre: np.ndarray, W: np.ndarray, uniq: np.ndarray,
                        vocab: tuple[int, ...]) -> list[np.ndarray]:
    """Exact p(x_j | x_<j = pre_<j) for each row and prefix position j < S-1.

    ``W`` (m, U): probability of each distinct prefix ``uniq`` (U, S-1) per item."""
    out = []
    for j in range(uniq.shape[1]):
        V = int(vocab[j])
        dims = tuple(int(v) for v in vocab[: j + 1])
        Wj = np.zeros((W.shape[0], int(np.prod(dims))))
        code = np.ravel_multi_index(uniq[:, : j + 1].T, dims)
        np.add.at(Wj.T, code, W.T)
        ctx = np.ravel_multi_index(pre[:, :j].T, dims[:-1]) if j else np.zeros(len(pre), dtype=np.int64)
        block = Wj.reshape(W.shape[0], -1, V)[item, ctx]  # (rows, V_j)
        out.append((block / np.maximum(block.sum(axis=1, keepdims=True), 1e-300)).astype(np.float32))
    return out


def rows_from_joint(states: np.ndarray, probs: np.ndarray, vocab: tuple[int, ...], prune: float = 1e-9):
    """Split joint distributions over a fixed state list into prefix rows.

    ``states`` (n, S) inside the count ``vocab``; ``probs`` (m, n) for m items. Returns (item,
    pre, w, tgt, ent, prefix conditionals of :func:`prefix_conditionals`)."""
    vlast = int(vocab[-1])
    S = states.shape[1]
    uniq, inv = np.unique(states[:, : S - 1], axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    U = len(uniq)
    m = len(probs)
    T = np.zeros((m, U, vlast))
    T[:, inv, states[:, S - 1]] = probs
    W = T.sum(axis=2)  # (m, U)
    keep = W > prune
    it, uu = np.nonzero(keep)
    w = W[it, uu]
    tgt = T[it, uu] / w[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(tgt > 0, tgt * np.log(tgt), 0.0).sum(axis=1)
    ent = w * (-np.log(w) + h)
    return it, uniq[uu], w, tgt.astype(np.float32), ent, prefix_conditionals(it, uniq[uu], W, uniq, vocab)


# ------------------------------------------------------------------------------- FSP teacher
def _batched_chunk(task) -> tuple[tuple, float]:
    """Teacher rows of one chunk of prompts integrated side by side (and the largest probability
    lost from the truncated space): a module-level function, so Dask workers can run it."""
    ss, params, x0, t0, dt, K, vocab = task
    p0 = np.zeros((len(x0), ss.n))
    p0[np.arange(len(x0)), ss.index(x0.astype(np.int64))] = 1.0
    P = batched_solve(ss, params, p0, t0, dt, K)  # (B, K, n)
    return rows_from_joint(ss.states, P.reshape(-1, ss.n), vocab), float(1 - P.sum(axis=2).min())


def _inside(d, vocab: tuple[int, ...]):
    """Per time j of a Distribution: (j, its states inside the count vocabulary, their
    probabilities, the probability outside it)."""
    V = np.asarray(vocab)
    for j in range(len(d.times)):
        st = np.asarray(d.states[j], dtype=np.int64)
        p = np.asarray(d.probabilities[j], dtype=float)
        ok = np.all(st < V[None, :], axis=1)
        yield j, st[ok], p[ok], float(p[~ok].sum())


def dense_joint(d, vocab: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """A Distribution's joints as dense float32 arrays (times, prod(vocab)) over the count
    vocabulary, and the largest probability lying outside it."""
    J = np.zeros((len(d.times), int(np.prod(vocab))), dtype=np.float32)
    outside = 0.0
    for j, st, p, out in _inside(d, vocab):
        np.add.at(J[j], np.ravel_multi_index(st.T, vocab), p)
        outside = max(outside, out)
    return J, outside


def sparse_rows(d, vocab: tuple[int, ...]) -> tuple[tuple, float]:
    """A Distribution's joints as prefix rows (:func:`rows_from_joint`, item j = time j), kept
    sparse: memory follows the states that carry probability, not the capped box (a conserved
    moiety leaves most of the box empty). Also the largest probability outside the vocabulary."""
    parts, outside = [], 0.0
    for j, st, p, out in _inside(d, vocab):
        it, pre, w, tgt, ent, ptg = rows_from_joint(st, p[None, :], vocab)
        parts.append((it + j, pre, w, tgt, ent, ptg))
        outside = max(outside, out)
    return _concat_rows(parts), outside


def _concat_rows(parts: list[tuple]) -> tuple:
    """Row tuples (item, pre, w, tgt, ent, prefix conditionals) joined, items as given."""
    cols = [np.concatenate([p[c] for p in parts]) for c in range(5)]
    ptg = [np.concatenate([p[5][j] for p in parts]) for j in range(len(parts[0][5]))]
    return (*cols, ptg)


def marginals_of(d, vocab: tuple[int, ...]) -> tuple[list[list[np.ndarray]], float]:
    """A Distribution's marginals per time and species over the count vocabulary."""
    out, outside = [], 0.0
    for _, st, p, lost in _inside(d, vocab):
        out.append([np.bincount(st[:, s], weights=p, minlength=V) for s, V in enumerate(vocab)])
        outside = max(outside, lost)
    return out, outside


_FORMS = {"dense": dense_joint, "sparse": sparse_rows, "marginals": marginals_of}
DENSE_ROWS_MAX_BYTES = 1 << 30  # beyond this the pointwise teacher keeps its rows sparse


def _pointwise_chunk(task) -> list[tuple[Any, float]]:
    """solve_fsp at each point of one chunk, in the teacher's ``form`` (for Dask workers)."""
    from ..fsp import solve_points

    net, points, times, inits, tol, max_states, vocab, form = task
    return [_FORMS[form](d, vocab) for _, d in solve_points(net, points, times, inits, tol=tol, max_states=max_states)]


def _n_dask_workers(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


@register_teacher("fsp")
class FSPTeacher(Teacher):
    """Exact CME distributions for Sobol prompts, each at ``times_per_prompt`` times.

    Two ways to get them (``method``): "batched" integrates all prompts side by side on one
    truncated state space shared by every prompt (fast for small spaces, e.g. a gene and a
    protein); "pointwise" runs the adaptive :func:`sbml_met.fsp.solve_fsp` per parameter point on
    ``workers`` local processes (all cores by default; in this process where a script's
    ``if __name__ == "__main__":`` guard is missing, see :func:`sbml_met.parallel.spawn_is_safe`)
    and keeps each joint distribution over the count vocabulary, densely, or as sparse rows
    once dense ones would outgrow 1 GiB (``rows``), for spaces of ~10^4-10^5 states, e.g. the
    toggle switch. "auto" picks batched when the capped box has at most ``batched_max_states`` states.

    ``symmetry``: pairs of species and free-parameter ids that the network is invariant under
    when swapped, e.g. ``{"sx": "sy", "Px": "Py", "Gux": "Guy"}`` for a symmetric toggle switch.
    The invariance is checked numerically on the propensities (an InvalidArgumentError
    otherwise); the pointwise method then also keeps every solved point's mirror image (the
    batched method, whose data are cheap, only checks it).
    ``time_spacing`` (pointwise): "uniform" output times per point, or "sqrt" (evenly spaced in
    sqrt(t - t_min), denser early where distributions change fastest).
    At most ~45% of the training time budget is spent on teacher data; the rest trains.
    """

    def __init__(self, n_prompts: int = 2048, times_per_prompt: int = 10, chunk: int = 256,
                 caps: dict | None = None, max_states: int = 200_000, method: str = "auto",
                 workers: int | None = None, symmetry: dict[str, str] | None = None,
                 tol: float = 1e-6, batched_max_states: int = 20_000, teacher_share: float = 0.45,
                 time_spacing: str = "uniform", anchor: dict | None = None, anchor_share: float = 0.25,
                 anchor_spread: float = 1.25, corners: int = 16, rows: str = "auto"):
        self.n_prompts, self.K, self.chunk = int(n_prompts), int(times_per_prompt), int(chunk)
        self.caps_override, self.max_states = caps, max_states
        if method not in ("auto", "batched", "pointwise"):
            raise InvalidArgumentError(f"unknown FSP teacher method {method!r}; choose auto, batched or pointwise")
        self.method, self.workers, self.symmetry = method, workers, dict(symmetry or {})
        self.tol, self.batched_max_states, self.share = float(tol), int(batched_max_states), float(teacher_share)
        if time_spacing not in ("uniform", "sqrt"):
            raise InvalidArgumentError(f"unknown time_spacing {time_spacing!r}; choose uniform or sqrt")
        self.time_spacing = time_spacing
        self.anchor, self.anchor_share, self.anchor_spread = dict(anchor or {}), float(anchor_share), float(anchor_spread)
        self.corners = int(corners)
        if rows not in ("auto", "dense", "sparse"):
            raise InvalidArgumentError(f"unknown rows {rows!r}; choose auto, dense or sparse")
        self.rows_form = rows

    def _prompts(self, ctx: TrainContext):
        """Sobol prompts; every k-th slot (``anchor_share``, spread so a partial solve keeps its
        share) goes near the ``anchor`` point (the model's own values: log-uniform within x/÷
        ``anchor_spread``, clipped to the box; the first one exactly at it), the first
        ``corners`` of those slots after it to the box's corners (all 2^F up to that many, else
        drawn): the extreme distributions, whose large counts interior prompts rarely reach.

        The other slots take the Sobol sequence's first points in order, and any prefix of a
        Sobol sequence covers the box evenly. Overwriting every k-th point of the sequence
        instead would empty whole regions: the low bits of a Sobol index set the high bits of
        its coordinates, so with k = 4 a quarter of the parameter plane lost every prompt."""
        space = ctx.space
        theta, x0, tfrac = space.sobol(self.n_prompts, ctx.seed, "mixed")
        anchored = bool(self.anchor) and self.anchor_share > 0
        n_corner = min(self.corners, self.n_prompts // 16) if space.free else 0
        if not (anchored or n_corner):
            return theta, x0, tfrac
        every = max(1, int(round(1 / min(self.anchor_share, 1.0)))) if anchored else 16
        special = np.arange(0, len(theta), every)
        plain = np.setdiff1d(np.arange(len(theta)), special)
        source = np.concatenate([np.arange(len(plain)), len(plain) + np.arange(len(special))])
        slots = np.concatenate([plain, special])
        out_theta, out_x0, out_t = np.empty_like(theta), np.empty_like(x0), np.empty_like(tfrac)
        out_theta[slots], out_x0[slots], out_t[slots] = theta[source], x0[source], tfrac[source]
        if anchored:
            a, _ = space.resolve(ctx.network, self.anchor, None)
            u = np.random.default_rng(ctx.seed + 4242).uniform(-1, 1, (len(special), len(a)))
            near = a[None, :] * np.exp(u * math.log(max(self.anchor_spread, 1.0)))
            near[0] = a
            out_theta[special] = np.clip(near, np.asarray(space.low), np.asarray(space.high))
        if n_corner:
            corners = space.corners(n_corner, ctx.seed + 31)
            at = special[1 : 1 + len(corners)] if self.anchor else special[: len(corners)]
            out_theta[at] = corners[: len(at)]
        return out_theta, out_x0, out_t

    def prepare(self, ctx: TrainContext) -> None:
        check_support(ctx.network, "met-fsp")
        net, space = ctx.network, ctx.space
        given = self.caps_override or {}
        if set(given) >= set(net.species):  # every cap given (for_model passes those it estimated)
            caps = np.array([int(given[sid]) for sid in net.species], dtype=np.int64)
        else:
            caps = estimate_caps(ctx)
            for sid, c in given.items():
                caps[net.species_index(sid)] = int(c)
        method = self.method
        if method == "auto":
            method = "batched" if float(np.prod(caps.astype(float) + 1)) <= self.batched_max_states else "pointwise"
        self.used_method = method
        if method == "pointwise":
            return self._prepare_pointwise(ctx, caps)
        if self.time_spacing != "uniform":
            raise InvalidArgumentError("time_spacing='sqrt' needs method='pointwise' (the batched method "
                                       "integrates on an evenly spaced time grid)")
        probe = [dict(zip(space.free, space.high)), dict(zip(space.free, np.sqrt(np.maximum(space.low, 1e-300) * np.asarray(space.high))))]
        starts = np.unique(ctx.space.sobol(256, ctx.seed, "uniform")[1].astype(np.int64), axis=0)
        starts = np.concatenate([starts, np.asarray(space.init_low, np.int64)[None], np.asarray(space.init_high, np.int64)[None]])
        ss = StateSpace(net, caps, np.unique(starts, axis=0), probe, self.max_states)
        ctx.state_space = ss
        self.vocab = tuple(int(v) + 1 for v in ss.states.max(axis=0))
        if self.symmetry:  # checked (a wrong declaration fails loudly), not needed: batched data are cheap
            self._mirror(ctx)
        theta, x0, tfrac = self._prompts(ctx)
        span = space.t_max - space.t_min
        dt = span / self.K
        t0 = space.t_min + (tfrac - space.t_min) / span * dt  # a Sobol offset within the first interval
        # a chunk integrates with the step its fastest prompt needs: chunk prompts of like speed
        order = np.argsort(_max_exit_rates(ss, ctx.params_dict(theta)), kind="stable")
        theta, x0, t0 = theta[order], x0[order], t0[order]
        starts = list(range(0, self.n_prompts, self.chunk))
        tasks = [(ss, ctx.params_dict(theta[a : a + self.chunk]), x0[a : a + self.chunk], t0[a : a + self.chunk],
                  dt, self.K, self.vocab) for a in starts]
        done = run_chunks(ctx, _batched_chunk, tasks, self.share, "FSP teacher")
        n_done = min(len(done) * self.chunk, self.n_prompts)
        tt = (t0[:n_done, None] + dt * np.arange(self.K)[None, :]).reshape(-1)
        feats = space.features(np.repeat(theta[:n_done], self.K, 0), np.repeat(x0[:n_done], self.K, 0), tt)
        items, pres, ws, tgts, ents, ptgs = [], [], [], [], [], []
        for a, ((it, pre, w, tgt, ent, ptg), _) in zip(starts, done):
            items.append(it + a * self.K), pres.append(pre), ws.append(w)
            tgts.append(tgt), ents.append(ent), ptgs.append(ptg)
        lost = max(lost for _, lost in done)
        self.rows = _Rows(feats, np.concatenate(items), np.concatenate(pres),
                          np.concatenate(ws), np.concatenate(tgts), np.concatenate(ents),
                          [np.concatenate([p[j] for p in ptgs]) for j in range(len(self.vocab) - 1)])
        ctx.log.append({"event": "teacher", "teacher": "fsp", "method": "batched", "prompts": n_done, "times_per_prompt": self.K,
                        "states": ss.n, "rows": len(self.rows.w), "caps": caps.tolist(),
                        "max_truncation_loss": lost})
        if lost > 1e-4:
            warnings.warn(f"FSP teacher: up to {lost:.2g} probability left the truncated state space "
                          f"(caps {dict(zip(net.species, caps.tolist()))})", stacklevel=user_stacklevel())

    def loss(self, net, ctx):
        return self.rows.batch_loss(net, ctx.rng, ctx.batch_size)

    def reference(self, ctx, theta, x0, t):
        if self.used_method == "batched":
            return fsp_or_ssa_reference(ctx, theta, x0, t)
        _, M, _ = self._solve(ctx, theta, x0, np.asarray(t, float)[:, None], deadline=None, form="marginals")
        return [m[0] for m in M]  # every point, in point order (no deadline)

    # ------------------------------------------------------------------ pointwise
    def _solve(self, ctx, theta, x0, times, deadline, form: str = "dense"):
        """solve_fsp at each point (theta_i, x0_i) and its times_i, on ``ctx.client``'s Dask
        workers, local processes or here: returns (indices done, in point order; per done point
        its answer in ``form`` (dense joints (K, prod(vocab)) float32, sparse rows or marginals);
        mass outside vocab)."""
        from ..fsp import solve_points

        net, space = ctx.network, ctx.space
        points = [dict(zip(space.free, map(float, th))) for th in theta]
        inits = [dict(zip(net.species, map(float, x))) for x in x0]
        times = [list(map(float, tt)) for tt in times]

        def tasks(step: int) -> list[tuple]:
            return [(net, points[a : a + step], times[a : a + step], inits[a : a + step], self.tol,
                     self.max_states, self.vocab, form) for a in range(0, len(points), step)]

        if ctx.client is not None:
            step = max(1, len(points) // (8 * _n_dask_workers(ctx.client)))
            chunks = run_chunks(ctx, _pointwise_chunk, tasks(step), self.share, "FSP teacher")
            joints = [J for chunk in chunks for J, _ in chunk]
            outside = max((o for chunk in chunks for _, o in chunk), default=0.0)
            return np.arange(len(joints), dtype=np.int64), joints, outside
        from tqdm.auto import tqdm

        from ..parallel import available_workers, map_until, spawn_is_safe, warn_unguarded

        workers = self.workers or available_workers()
        found: dict[int, tuple[Any, float]] = {}
        if workers > 1 and len(points) > 1 and not spawn_is_safe():
            warn_unguarded()
            workers = 1
        with tqdm(total=len(points), disable=not ctx.progress, leave=False, desc="FSP teacher") as bar:
            if workers > 1 and len(points) > 1:
                # processes: the Krylov steps hold the GIL, so threads run no faster than one
                step = max(1, min(8, len(points) // (4 * workers)))
                chunks = map_until(_pointwise_chunk, tasks(step), workers, deadline, lambda i, r: bar.update(len(r)))
                found = {c * step + k: r for c, rs in chunks.items() for k, r in enumerate(rs)}
            else:
                for i, d in solve_points(net, points, times, inits, tol=self.tol,
                                         max_states=self.max_states, workers=1, deadline=deadline):
                    found[i] = _FORMS[form](d, self.vocab)
                    bar.update()
        done = sorted(found)  # in point order, whichever finished first: the same data for a seed
        outside = max((found[i][1] for i in done), default=0.0)
        return np.asarray(done, dtype=np.int64), [found[i][0] for i in done], outside

    def _mirror(self, ctx):
        """(parameter permutation, species permutation) of the declared symmetry, or None."""
        if not self.symmetry:
            return None
        net, space = ctx.network, ctx.space
        pairs = dict(self.symmetry)
        pairs.update({v: k for k, v in self.symmetry.items()})
        fp = np.arange(len(space.free))
        sp_ = np.arange(net.n_species)
        for a, b in pairs.items():
            if a in space.free and b in space.free:
                fp[space.free.index(a)] = space.free.index(b)
            elif a in net.species and b in net.species:
                sp_[net.species_index(a)] = net.species_index(b)
            else:
                raise InvalidArgumentError(
                    f"symmetry pairs '{a}' with '{b}': both must be species or both free parameters "
                    f"(free: {', '.join(space.free)})")
        lo, hi = np.asarray(space.low), np.asarray(space.high)
        ilo, ihi = np.asarray(space.init_low), np.asarray(space.init_high)
        if not (np.allclose(lo[fp], lo) and np.allclose(hi[fp], hi) and np.array_equal(ilo[sp_], ilo)
                and np.array_equal(ihi[sp_], ihi)):
            raise InvalidArgumentError("symmetry maps the training box (or initial counts) onto a different one")
        # the CME is invariant iff the total propensity of each jump maps onto that of its image
        rng = np.random.default_rng(ctx.seed + 5)
        X = rng.integers(0, np.asarray(self.vocab)[None, :], (256, net.n_species)).astype(float)
        th = lo + rng.random((256, len(lo))) * (hi - lo)
        nu = np.asarray(net.stoichiometry, dtype=np.int64)
        jumps, inv = np.unique(nu, axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)

        def totals(X, th):
            a = np.asarray(net.propensities(X, 0.0, {p: th[:, i] for i, p in enumerate(space.free)}))
            a = np.broadcast_to(a, (len(X), len(nu)))
            A = np.zeros((len(X), len(jumps)))
            for r in range(len(nu)):
                A[:, inv[r]] += a[:, r]
            return A

        Xm, thm = np.empty_like(X), np.empty_like(th)
        Xm[:, sp_] = X
        thm[:, fp] = th
        image = np.empty_like(jumps)
        image[:, sp_] = jumps
        where = [int(np.flatnonzero(np.all(jumps == y, axis=1))[0]) if np.all(jumps == y, axis=1).any() else -1
                 for y in image]
        A, Am = totals(X, th), totals(Xm, thm)
        if min(where) < 0 or not np.allclose(Am[:, where], A, rtol=1e-9, atol=1e-12):
            raise InvalidArgumentError(f"the network is not invariant under the symmetry {self.symmetry}")
        return fp, sp_

    def _prepare_pointwise(self, ctx, caps):
        net, space = ctx.network, ctx.space
        vocab = caps.astype(np.int64) + 1
        for a, b in self.symmetry.items():
            if a in net.species and b in net.species:
                i, j = net.species_index(a), net.species_index(b)
                vocab[i] = vocab[j] = max(vocab[i], vocab[j])
        self.vocab = tuple(int(v) for v in vocab)
        size = int(np.prod(vocab))
        mirror = self._mirror(ctx)
        dense_bytes = 4.0 * size * self.n_prompts * self.K * (2 if mirror is not None else 1)
        rows = self.rows_form
        if rows == "auto":  # sparse rows once dense joints outgrow memory (mirror images need dense)
            rows = "dense" if mirror is not None or dense_bytes <= DENSE_ROWS_MAX_BYTES else "sparse"
        if rows == "dense" and size > 2_000_000:
            raise StateSpaceTooLargeError(
                f"the FSP teacher would keep {size} counts per distribution (vocabulary "
                f"{dict(zip(net.species, self.vocab))}); use rows='sparse' or teacher='ssa'")
        if rows == "sparse" and mirror is not None:
            raise InvalidArgumentError("a declared symmetry needs rows='dense' (mirror images are built from dense joints)")
        theta, x0, tfrac = self._prompts(ctx)
        span = space.t_max - space.t_min
        u = ((tfrac - space.t_min) / span)[:, None]  # a Sobol offset in (0, 1) per point
        frac = (np.arange(self.K)[None, :] + u) / self.K
        if self.time_spacing == "sqrt":  # denser early, where distributions change fastest
            frac = frac**2
        times = space.t_min + span * frac
        deadline = ctx.start + self.share * max(ctx.deadline - ctx.start, 1)
        idx, joints, outside = self._solve(ctx, theta, x0, times, deadline, form=rows)
        if len(idx) < self.n_prompts:
            warnings.warn(f"FSP teacher solved {len(idx)} of {self.n_prompts} parameter points within "
                          f"its share of the time budget", stacklevel=user_stacklevel())
        if not len(idx):
            raise InvalidArgumentError("the FSP teacher solved no parameter point within the time budget; "
                                       "give more minutes")
        th, xx, tt = theta[idx], x0[idx], times[idx]
        log = {"event": "teacher", "teacher": "fsp", "method": "pointwise", "points": int(len(idx)),
               "mirrored": mirror is not None, "times_per_prompt": self.K,
               "items": int(len(idx) * self.K * (2 if mirror is not None else 1)),
               "vocab": list(self.vocab), "caps": caps.tolist(), "max_outside_vocab": outside, "rows": rows}
        if rows == "sparse":
            feats = space.features(np.repeat(th, self.K, 0), np.repeat(xx, self.K, 0), tt.reshape(-1))
            it, pre, w, tgt, ent, ptg = _concat_rows([(r[0] + k * self.K, *r[1:]) for k, r in enumerate(joints)])
            self.rows = _Rows(feats, it, pre, w, tgt, ent, ptg)
            log["rows_kept"] = int(len(w))
        else:
            self.rows = self._dense_rows(space, th, xx, tt, np.stack(joints), mirror)
        ctx.log.append(log)
        if outside > 1e-4:
            warnings.warn(f"FSP teacher: up to {outside:.2g} probability lay outside the count vocabulary "
                          f"{dict(zip(net.species, self.vocab))}", VocabularyOverflowWarning,
                          stacklevel=user_stacklevel())

    def _dense_rows(self, space, th, xx, tt, J, mirror) -> "_JointRows":
        """Dense joint rows (m, K, size) of the solved points, with their mirror images."""
        size = J.shape[-1]
        if mirror is not None:
            fp, sp_ = mirror
            thm, xxm = np.empty_like(th), np.empty_like(xx)
            thm[:, fp], xxm[:, sp_] = th, xx
            axes = [0, 1] + [2 + int(a) for a in np.argsort(sp_)]
            Jm = J.reshape((len(J), self.K) + self.vocab).transpose(axes).reshape(J.shape)
            th, xx, tt, J = (np.concatenate([th, thm]), np.concatenate([xx, xxm]), np.concatenate([tt, tt]),
                             np.concatenate([J, Jm]))
        feats = space.features(np.repeat(th, self.K, 0), np.repeat(xx, self.K, 0), tt.reshape(-1))
        return _JointRows(feats, J.reshape(-1, size // self.vocab[-1], self.vocab[-1]), self.vocab)


class _JointRows:
    """Dense joints per item, (m, U, V_last) over the count vocabulary: a row is an item (drawn
    uniformly) and a prefix u of the first S-1 counts (drawn with probability P(u)); its target
    is the exact last conditional P(x_S | u). The expected row loss is the joint cross-entropy."""

    def __init__(self, feats, J, vocab):
        self.feats = torch.as_tensor(np.ascontiguousarray(feats))
        self.J = torch.as_tensor(np.ascontiguousarray(J, dtype=np.float32))
        self.vocab = tuple(vocab)
        W = self.J.double().sum(dim=2)
        self.C = torch.cumsum(W, dim=1)
        tot = self.C[:, -1:].clamp_min(1e-300)
        p = self.J.double() / tot[:, :, None]
        self.ent = -(torch.where(p > 0, p * torch.log(p), torch.zeros(()))).sum(dim=(1, 2)).float()
        self.radix = torch.as_tensor([int(np.prod(self.vocab[i + 1 : -1])) for i in range(len(self.vocab) - 1)],
                                     dtype=torch.long)
        # prefix marginals P(x_0..x_j) per item, for the exact targets of prefix positions
        full = self.J.reshape((len(self.J),) + self.vocab)
        self.marg = [full.sum(dim=tuple(range(j + 2, len(self.vocab) + 1))).reshape(len(self.J), -1)
                     for j in range(len(self.vocab) - 1)]

    def batch_loss(self, net, rng: np.random.Generator, B: int) -> tuple[torch.Tensor, float]:
        dev = self.J.device
        item = torch.as_tensor(rng.integers(0, len(self.J), B), device=dev)
        C = self.C[item]
        u = torch.as_tensor(1.0 - rng.random(B), device=dev) * C[:, -1]
        pref = torch.searchsorted(C, u[:, None]).squeeze(1).clamp_max(C.shape[1] - 1)
        pre = (pref[:, None] // self.radix[None, :]) % torch.as_tensor(self.vocab[:-1], device=dev)[None, :]
        tgt = self.J[item, pref]
        tgt = tgt / tgt.sum(dim=1, keepdim=True).clamp_min(1e-30)
        targets, ctx = [], torch.zeros(B, dtype=torch.long, device=dev)
        for j in range(pre.shape[1]):  # exact p(x_j | u_<j) as the target of position j
            V = self.vocab[j]
            block = self.marg[j].reshape(len(self.J), -1, V)[item, ctx]
            targets.append(block / block.sum(dim=1, keepdim=True).clamp_min(1e-30))
            ctx = ctx * V + pre[:, j]
        ce = sequence_cross_entropy(net.logits(self.feats[item], pre), targets + [tgt])
        return ce.mean(), float((ce.detach() - self.ent[item]).mean())


# ------------------------------------------------------------------------------- SSA teacher
def _ssa_chunk(task) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of SSA teacher trajectories, each recorded at its own sorted random times:
    (times (m, K), states (m, K, S)); a module-level function, so Dask workers can run it."""
    net, params, x0, t_min, t_max, K, seed = task
    rng = np.random.default_rng(seed)
    rec = np.sort(rng.uniform(t_min, t_max, (len(x0), K)), axis=1)
    return rec, ssa_batch(net, params, x0, rec, rng)


@register_teacher("ssa")
class SSATeacher(Teacher):
    """Maximum likelihood on exact SSA samples: each trajectory has its own Sobol prompt and is
    recorded at ``times_per_trajectory`` random times."""

    def __init__(self, n_prompts: int = 32768, times_per_trajectory: int = 8, chunk: int = 8192,
                 vocab_factor: float = 1.25, vocab: tuple[int, ...] | None = None, n_reference: int = 4000):
        self.n, self.K, self.chunk, self.vocab_factor = int(n_prompts), int(times_per_trajectory), int(chunk), vocab_factor
        self.n_reference = int(n_reference)  # SSA trajectories per validation prompt (beyond FSP)
        self.fixed_vocab = tuple(int(v) for v in vocab) if vocab else None

    def prepare(self, ctx: TrainContext) -> None:
        check_support(ctx.network, "met-ssa")
        net, space = ctx.network, ctx.space
        theta, x0, _ = space.sobol(self.n, ctx.seed, "mixed")
        starts = list(range(0, self.n, self.chunk))
        seeds = child_seeds(ctx.seed + 1, len(starts))  # per chunk: the same data on any worker
        tasks = [(net, ctx.params_dict(theta[a : a + self.chunk]), x0[a : a + self.chunk], space.t_min,
                  space.t_max, self.K, seed) for a, seed in zip(starts, seeds)]
        out = run_chunks(ctx, _ssa_chunk, tasks, 0.3, "SSA teacher")
        done = min(len(out) * self.chunk, self.n)
        rec = np.concatenate([r for r, _ in out])
        feats = space.features(np.repeat(theta[:done], self.K, 0), np.repeat(x0[:done], self.K, 0), rec.reshape(-1))
        X = np.concatenate([x.reshape(-1, net.n_species) for _, x in out]).astype(np.int64)
        mx = X.max(axis=0)
        self.vocab = tuple(int(v) for v in count_vocabulary(mx, net.dynamic_species, self.vocab_factor, pad=7))
        if self.fixed_vocab:
            self.vocab = self.fixed_vocab
            inside = np.all(X < np.asarray(self.vocab)[None, :], axis=1)
            if not inside.all():
                warnings.warn(f"SSA teacher: {int((~inside).sum())} samples exceed the fixed vocabulary "
                              f"{self.vocab} and are left out", VocabularyOverflowWarning,
                              stacklevel=user_stacklevel())
            X, feats = X[inside], feats[inside]
        self.feats = torch.as_tensor(feats)
        self.X = torch.as_tensor(X)
        ctx.log.append({"event": "teacher", "teacher": "ssa", "trajectories": done, "samples": len(X),
                        "max_counts": mx.tolist()})

    def loss(self, net, ctx):
        idx = torch.as_tensor(ctx.rng.integers(0, len(self.X), ctx.batch_size), device=self.X.device)
        nll = -net.log_prob(self.feats[idx], self.X[idx]).mean()
        return nll, float(nll.detach())

    def reference(self, ctx, theta, x0, t):
        return fsp_or_ssa_reference(ctx, theta, x0, t, n_ssa=self.n_reference)


# ------------------------------------------------------------------------------- exact birth-death
@register_teacher("poisson")
class PoissonTeacher(Teacher):
    """Exact immigration-death answer: births at a constant rate k1, deaths at k2 * X.
    X(t) = Poisson(k1/k2 (1 - e^{-k2 t})) + Binomial(X0, e^{-k2 t})."""

    def __init__(self, n_prompts: int = 1024, times_per_prompt: int = 8):
        self.n, self.K = int(n_prompts), int(times_per_prompt)

    def _rates(self, ctx, theta):
        net = ctx.network
        if net.n_species != 1 or sorted(net.stoichiometry[:, 0].tolist()) != [-1, 1]:
            raise InvalidArgumentError("teacher 'poisson' needs a one-species birth-death network")
        P = ctx.params_dict(theta)
        a = np.asarray(net.propensities(np.array([[0.0], [1.0], [2.0]]), 0.0,
                                        {k: v[:, None] for k, v in P.items()}) if P else
                       net.propensities(np.array([[0.0], [1.0], [2.0]])))
        a = a if a.ndim == 3 else np.broadcast_to(a, (len(theta),) + a.shape)
        b = int(np.flatnonzero(net.stoichiometry[:, 0] == 1)[0])
        d = int(np.flatnonzero(net.stoichiometry[:, 0] == -1)[0])
        k1, k2 = a[:, 0, b], a[:, 1, d]
        if not (np.allclose(a[:, 2, b], k1) and np.allclose(a[:, 2, d], 2 * k2) and np.allclose(a[:, 0, d], 0)):
            raise InvalidArgumentError("teacher 'poisson' needs constant births and linear deaths")
        return k1, k2

    def _pmf(self, ctx, theta, x0, t, V):
        k1, k2 = self._rates(ctx, theta)
        s = np.exp(-k2 * t)
        lam = np.where(k2 > 0, k1 / np.where(k2 > 0, k2, 1) * (1 - s), k1 * t)
        x = np.arange(V)
        out = poisson.pmf(x[None, :], lam[:, None])
        for i in np.flatnonzero(x0[:, 0] > 0):
            n0 = int(x0[i, 0])
            out[i] = np.convolve(out[i], binom.pmf(np.arange(n0 + 1), n0, s[i]))[:V]
        return out

    def prepare(self, ctx):
        space = ctx.space
        theta, x0, _ = space.sobol(self.n, ctx.seed, "mixed")
        hi = np.asarray(space.high)[None, :]
        k1, k2 = self._rates(ctx, hi)
        t_hi = np.array([space.t_max])
        lam = float(np.where(k2 > 0, k1 / np.where(k2 > 0, k2, 1) * (1 - np.exp(-k2 * t_hi)), k1 * t_hi)[0])
        lam = max(lam, float(k1[0] * space.t_max) if k2[0] == 0 else lam)
        vmax = int(max(lam + 10 * math.sqrt(lam + 1) + 10, max(space.init_high) + 10))
        self.vocab = (vmax,)
        rng = np.random.default_rng(ctx.seed + 1)
        t = rng.uniform(space.t_min, space.t_max, (self.n, self.K)).reshape(-1)
        th, xx = np.repeat(theta, self.K, 0), np.repeat(x0, self.K, 0)
        pmf = self._pmf(ctx, th, xx, t, vmax)
        it = np.arange(len(t))
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(pmf > 0, pmf * np.log(pmf), 0).sum(1)
        self.rows = _Rows(space.features(th, xx, t), it, np.zeros((len(t), 0), np.int64), pmf.sum(1),
                          pmf / pmf.sum(1, keepdims=True), ent, [])  # one species: no prefix positions
        ctx.log.append({"event": "teacher", "teacher": "poisson", "items": len(t), "vocab": vmax})

    def loss(self, net, ctx):
        return self.rows.batch_loss(net, ctx.rng, ctx.batch_size)

    def reference(self, ctx, theta, x0, t):
        return [[p] for p in self._pmf(ctx, theta, x0, t, self.vocab[0])]
