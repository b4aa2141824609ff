"""Validation of any sbml-met answer against libroadrunner (Tellurium) Gillespie runs.

``validate(network, result)`` runs ``n_reference`` roadrunner trajectories of the same SBML on the
result's time grid and, per time and species with any spread, applies three tests, each at level
alpha / m (Bonferroni, m = 3 x the number of such checks), so that a *correct* result is flagged
anywhere in the report with probability at most ``alpha`` (default 0.001): exactly so for the
Chernoff and KS p-values, which are conservative; the two-sample z tests are asymptotic (their
false-alarm rate is measured in tests/test_validate.py and bench/validate_calibration.py):

* mean and spread, result sampled (two samples): Welch z for the means, and for the variances with
  SE^2 of a sample variance = (mu4 - s^4) / n; p = 2 Phi(-|z|). With equal sample sizes the null
  distribution is symmetric, so the skewness of wide marginals cancels; measured on the bench.
* mean and spread, result exact: the reference is n draws from the known pmf q, so the tail of its
  sample mean (and of its mean squared deviation from q's mean) is bounded by Chernoff's inequality,
  P(mean >= x) <= exp(-n I(x)), I the rate function of q: p = min(1, 2 exp(-n I)). This holds for
  every n and every q (a 0/1 species whose rare state has probability 1e-4 included), where the
  normal approximation would be far too liberal; it costs ~10% of the z threshold.
* distribution: the Kolmogorov-Smirnov distance D between the marginal CDFs. Two samples: p =
  Kolmogorov's asymptotic tail at sqrt(n m / (n + m)) D, which lies above the exact finite-sample
  tail for equal sizes (checked against the exact law at n = 500 .. 10,000 down to 1e-5). Exact
  result: p = the exact finite-n one-sample law (scipy's kstwo). For discrete counts (ties) both are
  conservative, since D is then a supremum over a subset of the continuous case's points.

Where both sides have zero spread, the check passes only if they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, UnknownIdError
from .metrics import hellinger
from .network import ReactionNetwork
from .results import Distribution, SSAResult, as_distribution

COLUMNS = ["time", "species", "method", "mean", "reference_mean", "z", "std", "reference_std",
           "hellinger", "noise_floor", "verdict", "ks", "p_mean", "p_std", "p_distribution",
           "detectable_shift"]


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """Per time and species comparison of a result with a libroadrunner reference ensemble."""

    model: str
    method: str
    table: pd.DataFrame = field(repr=False)
    n_reference: int
    n_result: int | None  # trajectories behind the result (None: an exact distribution)
    alpha: float
    z_critical: float  # |z| beyond which the mean test fires (Gaussian equivalent for Chernoff)
    reference: SSAResult = field(repr=False)
    result: Distribution = field(repr=False)
    n_tests: int = 0  # m: the Bonferroni divisor, 3 x the checks with any spread

    @property
    def ok(self) -> bool:
        """True when no check disagrees beyond sampling noise."""
        return bool((self.table["verdict"] == "ok").all())

    @property
    def p_value(self) -> float:
        """Familywise (Bonferroni) p-value: the report is flagged at level a exactly when
        ``p_value <= a`` (checks without spread that disagree give 0)."""
        t = self.table
        p = t[["p_mean", "p_std", "p_distribution"]].to_numpy(float).min(initial=1.0)
        return float(min(1.0, p * max(self.n_tests, 1)))

    def to_frame(self) -> pd.DataFrame:
        """time, species, method, mean, reference_mean, z, std, reference_std, hellinger (descriptive),
        noise_floor (the KS distance sampling noise alone exceeds with probability alpha/m), verdict
        (``ok``, or which of mean/std/distribution differ), ks (the KS distance between the marginal
        CDFs), p_mean, p_std, p_distribution (per-test p-values, not yet multiplied by m) and
        detectable_shift (the mean difference at which the mean test fires: z_critical x SE)."""
        return self.table.copy()

    def failures(self) -> pd.DataFrame:
        """Rows whose verdict is not ``ok``."""
        return self.table[self.table["verdict"] != "ok"].reset_index(drop=True)

    def sensitivity(self) -> str:
        """What the check can and cannot see: alpha, the number of tests, the smallest relative mean
        shift it flags at this n (with probability 1/2: a shift of z_critical standard errors)."""
        t = self.table
        rel = (t["detectable_shift"] / t["reference_mean"].abs()).replace(np.inf, np.nan)
        rel = rel[(t["detectable_shift"] > 0)].dropna()
        text = (f"It ran {self.n_tests} tests (mean, spread and marginal CDF at each time and species with "
                f"any spread), each at level alpha/{self.n_tests} = {self.alpha / max(self.n_tests, 1):.2g}, "
                f"so a correct result is flagged anywhere with probability at most alpha = {self.alpha:g}. ")
        if rel.empty:
            return text
        i = rel.idxmin()
        return text + (f"It sees an error in a mean once it exceeds {self.z_critical:.2f} standard errors: "
                       f"{rel.median():.1%} of the mean (median over {len(rel)} checks; smallest "
                       f"{rel[i]:.1%}, {t.loc[i, 'species']} at t = {t.loc[i, 'time']:g}). A smaller error "
                       f"passes unseen at this n.")

    def summary(self) -> str:
        """One paragraph a biologist can read: what was compared, the verdict, where it fails, and
        what the check can and cannot see."""
        t = self.table
        sampled = (f"an ensemble of {self.n_result:,} trajectories" if self.n_result
                   else _approximation(self.result) or "an exact distribution")
        head = (f"The {self.method} result for model '{self.model}' ({sampled}) was compared with "
                f"{self.n_reference:,} libroadrunner Gillespie trajectories of the same SBML at "
                f"{t['time'].nunique()} times x {t['species'].nunique()} species ({len(t)} checks "
                f"of mean, standard deviation and marginal distribution). ")
        if self.ok:
            return head + "Verdict: OK, every check agrees within sampling noise. " + self.sensitivity()
        bad = self.failures()
        parts = []
        for s, g in bad.groupby("species", sort=False):
            parts.append(f"{s} at t = " + ", ".join(f"{x:g}" for x in g["time"]))
        worst = bad.loc[bad[["p_mean", "p_std", "p_distribution"]].min(axis=1).idxmin()]
        return (head + f"Verdict: DISAGREES at {len(bad)} of {len(t)} checks: " + "; ".join(parts)
                + f". Largest: {worst['species']} at t = {worst['time']:g}, mean {worst['mean']:.4g} vs "
                f"reference {worst['reference_mean']:.4g} (z = {worst['z']:.3g}), KS distance "
                f"{worst['ks']:.3g} vs noise floor {worst['noise_floor']:.3g}. " + self.sensitivity())

    def plot(self, times: Any = None, species: Any = None, max_times: int = 4):
        """Marginals side by side (rows: times, columns: species): the result's probabilities and
        the reference histogram. Failing checks are titled in red. Returns a matplotlib Figure."""
        from matplotlib.figure import Figure

        from .plot import METHOD_COLOURS, binned, method_colour, shared_bins

        all_times = list(dict.fromkeys(self.table["time"]))
        sp = list(species) if species is not None else list(dict.fromkeys(self.table["species"]))
        if times is None:
            bad = list(dict.fromkeys(self.failures()["time"]))
            pick = bad[:max_times] if bad else []
            rest = [all_times[int(i)] for i in np.linspace(0, len(all_times) - 1,
                                                           min(max_times, len(all_times)))]
            times = sorted(dict.fromkeys(pick + [x for x in rest if x not in pick]))[:max_times]
        times = [float(x) for x in times]
        fig = Figure(figsize=(3.2 * len(sp), 2.7 * len(times)), layout="constrained")
        axes = fig.subplots(len(times), len(sp), squeeze=False)
        idx = self.table.set_index(["time", "species"])
        for r, t in enumerate(times):
            for c, s in enumerate(sp):
                ax = axes[r, c]
                j = int(np.argmin(np.abs(self.reference.times - t)))
                ref = _counts_pmf(self.reference.states[:, j, self.reference.species.index(s)])
                res = self.result.marginal(s, t)
                edges, width = shared_bins([ref, res])
                ax.bar(edges[:-1], binned(ref, edges), width=width, align="edge", alpha=0.45,
                       color=METHOD_COLOURS["tellurium"], label=f"Tellurium (n={self.n_reference:,})")
                ax.stairs(binned(res, edges), edges, color=method_colour(self.method), lw=1.5, label=self.method)
                row = idx.loc[(t, s)] if (t, s) in idx.index else None
                ok = row is None or row["verdict"] == "ok"
                title = f"{s}, t={t:g}: " + ("agrees" if ok else str(row["verdict"]))
                if row is not None:
                    title += f"\n(KS distance {row['ks']:.3f}, noise floor {row['noise_floor']:.3f})"
                ax.set_title(title, fontsize=8, color="black" if ok else "red")
                if width > 1:
                    ax.set_ylabel(f"probability per {width} counts")
                if r == len(times) - 1:
                    ax.set_xlabel("count")
                if c == 0 and width == 1:
                    ax.set_ylabel("probability")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(f"{self.model}: {self.method} vs libroadrunner gillespie — "
                     + ("OK" if self.ok else "DISAGREES"))
        from .plot import displayable  # shown as an image in Jupyter

        return displayable(fig)

    def __repr__(self) -> str:
        bad = int((self.table["verdict"] != "ok").sum())
        return (f"ValidationReport({self.model}: {self.method} vs roadrunner n={self.n_reference}, "
                f"{'ok' if self.ok else f'{bad} of {len(self.table)} checks fail'})")


# ------------------------------------------------------------------------------------------ helpers
def _approximation(result: Distribution) -> str | None:
    """How a MET's answer is described: an approximation with its measured held-out error."""
    meta = getattr(result, "metadata", None) or {}
    if not meta.get("approximation"):
        return None
    h = meta.get("held_out_hellinger_mean")
    text = "an approximation by a Master Equation Transformer"
    if h is not None:
        against = "exact answers" if "exact" in str(meta.get("accuracy", "")) else "SSA histograms"
        text += f", measured held-out mean marginal Hellinger distance {h:.4f} against {against} over its box"
    if meta.get("own_parameters_hellinger_max") is not None:
        text += f" (at most {meta['own_parameters_hellinger_max']:.4f} at these parameter values)"
    return text


def _counts_pmf(x: np.ndarray) -> pd.Series:
    """Empirical pmf of whole counts as a Series indexed by the counts that occur (sparse, so
    that counts of 10^14 molecules cost no more than counts of 10)."""
    c = np.asarray(np.round(x), dtype=np.int64)
    if c.size and c.min() < 0:
        raise InvalidArgumentError("negative molecule counts cannot be validated")
    values, freq = np.unique(c, return_counts=True)
    return pd.Series(freq / c.size, index=pd.Index(values, name="count"), name="probability")


def _moments(p: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    """Mean, variance and fourth central moment of the pmf ``p`` over the counts ``x``."""
    p = p / p.sum()
    m = float(p @ x)
    d = x - m
    return m, float(p @ d**2), float(p @ d**4)


def _z_p(diff: float, se: float) -> tuple[float, float]:
    """z = diff / se and its two-sided normal p-value (se = 0: exact agreement or certain failure)."""
    from scipy.special import ndtr

    if se > 0:
        z = diff / se
        return z, float(2 * ndtr(-abs(z)))
    return (0.0, 1.0) if abs(diff) <= 1e-9 else (float(np.copysign(np.inf, diff)), 0.0)


def _chernoff_p(values: np.ndarray, probs: np.ndarray, xbar: float, n: int) -> float:
    """Two-sided Chernoff p-value of the mean ``xbar`` of n iid draws from the pmf (values, probs):
    min(1, 2 exp(-n I(xbar))), I the rate function; valid for every n and every pmf."""
    from scipy.optimize import brentq
    from scipy.special import logsumexp, softmax

    keep = probs > 0
    v, q = values[keep], probs[keep] / probs[keep].sum()
    mu = float(q @ v)
    sd = float(np.sqrt(q @ (v - mu) ** 2))
    if sd <= 1e-12 * max(1.0, abs(mu)):
        return 1.0 if abs(xbar - mu) <= 1e-9 * max(1.0, abs(mu)) else 0.0
    u, a, logq = (v - mu) / sd, (xbar - mu) / sd, np.log(q)
    if abs(a) < 1e-12:
        return 1.0
    edge = u.max() if a > 0 else u.min()
    if abs(a) >= abs(edge) - 1e-12:  # at or beyond the support's end: P = q(end)^n, or 0
        return float(min(1.0, 2 * q[u == edge].sum() ** n)) if abs(a) <= abs(edge) + 1e-9 else 0.0
    slope = lambda th: float(softmax(th * u + logq) @ u) - a  # noqa: E731  Lambda'(th) - a
    hi = np.copysign(1.0, a)
    while slope(hi) * np.sign(a) < 0:
        hi *= 2.0
    th = brentq(slope, 0.0, hi, xtol=1e-12)
    rate = max(th * a - float(logsumexp(th * u + logq)), 0.0)
    return float(min(1.0, 2 * np.exp(-n * rate)))


def _ks(p_ref: np.ndarray, p_res: np.ndarray, n_ref: int, n_res: int | None) -> tuple[float, float]:
    """KS distance between two pmfs on one sorted support and its p-value: Kolmogorov's asymptotic tail for two
    samples, the exact finite-n law for a sample against an exact pmf (both conservative on ties)."""
    from scipy.special import kolmogorov
    from scipy.stats import kstwo

    d = float(np.abs(np.cumsum(p_ref) - np.cumsum(p_res)).max())
    if d <= 1e-12:
        return 0.0, 1.0
    if n_res:
        return d, float(kolmogorov(np.sqrt(n_ref * n_res / (n_ref + n_res)) * d))
    return d, float(kstwo.sf(d, n_ref))


def _ks_floor(n_ref: int, n_res: int | None, level: float) -> float:
    """The KS distance that sampling noise alone exceeds with probability at most ``level``."""
    from scipy.special import kolmogi
    from scipy.stats import kstwo

    if n_res:
        return float(kolmogi(level) / np.sqrt(n_ref * n_res / (n_ref + n_res)))
    return float(kstwo.isf(level, n_ref))


def _mean_spread_tests(p_ref: np.ndarray, p_res: np.ndarray, x: np.ndarray, n_ref: int, n_res: int | None
                       ) -> tuple[float, float, float, float, float, float, float, float]:
    """mean, reference mean, std, reference std, z, p_mean, p_std and the mean's standard error."""
    mu_r, var_r, m4_r = _moments(p_ref, x)
    mu, var, m4 = _moments(p_res, x)
    var_r = var_r * n_ref / max(n_ref - 1, 1)
    if n_res:  # two samples: Welch standard errors, sample variances (ddof=1)
        var = var * n_res / max(n_res - 1, 1)
        se = float(np.sqrt(var_r / n_ref + var / n_res))
        se_var = np.sqrt(max(m4_r - var_r**2, 0.0) / n_ref + max(m4 - var**2, 0.0) / n_res)
        z, p_mean = _z_p(mu - mu_r, se)
        p_std = _z_p(var - var_r, float(se_var))[1]
    else:  # exact result: the reference is n_ref draws from p_res; Chernoff bounds
        se = float(np.sqrt(var / n_ref))
        z = _z_p(mu - mu_r, se)[0]
        p_mean = _chernoff_p(x, p_res, mu_r, n_ref)
        p_std = _chernoff_p((x - mu) ** 2, p_res, float(p_ref @ (x - mu) ** 2) / p_ref.sum(), n_ref)
    return mu, mu_r, float(np.sqrt(var)), float(np.sqrt(var_r)), z, p_mean, p_std, se


def _marginals(dist: Distribution, result: Any, reference: SSAResult, times: np.ndarray) -> list:
    """(time, species, reference pmf, result pmf) for every time and species of the result."""
    rows = []
    for j, t in enumerate(times):
        for s in dist.species:
            ref = _counts_pmf(reference.states[:, j, reference.species.index(s)])
            if isinstance(result, SSAResult):
                res = _counts_pmf(result.states[:, j, result.species.index(s)])
            else:
                res = dist.marginal(s, t)
            rows.append((float(t), s, ref, res))
    return rows


def _check(t: float, s: str, ref: pd.Series, res: pd.Series, n_ref: int, n_res: int | None,
           level: float, z_crit: float, method: str) -> tuple:
    """One row of the report: the three tests on one time and species."""
    support = ref.index.union(res.index)  # sorted counts either side holds; CDFs step only there
    p_ref = ref.reindex(support, fill_value=0.0).to_numpy(float)
    p_res = res.reindex(support, fill_value=0.0).to_numpy(float)
    p_res = p_res / p_res.sum()
    x = support.to_numpy(float)
    mu, mu_r, sd, sd_r, z, p_mean, p_std, se = _mean_spread_tests(p_ref, p_res, x, n_ref, n_res)
    d, p_dist = _ks(p_ref, p_res, n_ref, n_res)
    spread = np.count_nonzero(p_ref) > 1 or np.count_nonzero(p_res) > 1
    floor = _ks_floor(n_ref, n_res, level) if spread else 0.0
    failed = [name for name, p in (("mean", p_mean), ("std", p_std), ("distribution", p_dist))
              if not p > level]
    verdict = "ok" if not failed else "differs: " + ", ".join(failed)
    return (t, s, method, mu, mu_r, z, sd, sd_r, hellinger(p_ref, p_res), floor, verdict, d, p_mean,
            p_std, p_dist, z_crit * se)


# ------------------------------------------------------------------------------------------ API
def validate(
    network: ReactionNetwork,
    result: SSAResult | Distribution,
    n_reference: int = 10_000,
    seed: int | None = 1,
    *,
    alpha: float = 1e-3,
    processes: int | None = None,
    reference: SSAResult | None = None,
) -> ValidationReport:
    """Check ``result`` (SSAResult or Distribution of ``network``, from SSA, FSP or MET) against
    ``n_reference`` libroadrunner Gillespie trajectories of ``network.to_sbml()``.

    ``alpha``: the probability that a correct result is flagged anywhere in the report.
    ``reference``: a precomputed reference SSAResult on the result's times (skips roadrunner).
    """
    from scipy.stats import norm

    if not isinstance(network, ReactionNetwork):
        raise InvalidArgumentError(f"validate needs a ReactionNetwork, got {type(network).__name__}")
    if not 0 < alpha < 1:
        raise InvalidArgumentError(f"alpha must lie in (0, 1), got {alpha}")
    dist = as_distribution(result)
    n_result = result.n if isinstance(result, SSAResult) else dist.n_samples
    method = result.method if isinstance(result, SSAResult) else dist.method
    for s in dist.species:
        if s not in network.species:
            raise UnknownIdError(f"the result has species '{s}', which model '{network.name}' lacks; "
                                 f"its species are: {', '.join(network.species)}")
    times = np.asarray(dist.times, dtype=float)
    if reference is None:
        from .tellurium import run_gillespie

        reference = run_gillespie(network, times, n=n_reference, seed=seed, processes=processes)
    elif reference.times.shape != times.shape or not np.allclose(reference.times, times):
        raise InvalidArgumentError("the reference must be recorded on the result's times")
    for s in dist.species:
        if s not in reference.species:
            raise UnknownIdError(f"the reference lacks species '{s}' of the result")
    rows = _marginals(dist, result, reference, times)
    spread = [np.count_nonzero(ref.to_numpy()) > 1 or np.count_nonzero(res.to_numpy()) > 1
              for _, _, ref, res in rows]
    m = 3 * max(1, sum(spread))
    level = alpha / m
    # |z| at which the mean test fires: normal quantile, or where exp(-z^2/2) (Chernoff) hits level/2
    z_crit = float(norm.isf(level / 2)) if n_result else float(np.sqrt(2 * np.log(2 / level)))
    out = [_check(t, s, ref, res, reference.n, n_result, level, z_crit, method) for t, s, ref, res in rows]
    return ValidationReport(model=network.name, method=method, table=pd.DataFrame(out, columns=COLUMNS),
                            n_reference=reference.n, n_result=n_result, alpha=alpha, z_critical=z_crit,
                            reference=reference, result=dist, n_tests=m)
