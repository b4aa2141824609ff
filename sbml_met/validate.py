"""Validation of any sbml-met answer against libroadrunner (Tellurium) Gillespie runs.

``validate(network, result)`` runs ``n_reference`` roadrunner trajectories of the same SBML on the
result's time grid and, per time and species, applies three tests whose thresholds are set so
that a *correct* result is flagged with probability at most ``alpha`` (default 0.001) over the
whole report (Bonferroni over 3 tests x every time x species with any spread):

* mean: z = (mean - reference_mean) / SE, flagged when |z| > z_crit = Phi^-1(1 - alpha / (2 m)),
  m = number of tests. For a sampled result SE = sqrt(s_ref^2/n_ref + s^2/n) (Welch); for an exact
  result SE = sqrt(max(s_ref^2, sigma^2) / n_ref): the reference's standard error, with its spread
  taken at least as large as the result's, so that a reference that happens to miss a rare state
  (sample variance 0, e.g. a promoter that unbinds with probability 0.001) cannot make a tiny
  difference infinitely significant. (Counts of rare states are Poisson, not normal: there the
  test is somewhat anti-conservative.)
* spread: the same for the variance, SE^2 of a sample variance = (mu4 - s^4) / n (fourth central
  moment estimated from the marginal).
* distribution: the marginal Hellinger distance against its *noise floor*, the distance that
  sampling noise alone exceeds with probability alpha / m. The floor is estimated by parametric
  bootstrap under the null hypothesis that both sides share one marginal q (q = the result's
  marginal when the result is exact, e.g. FSP or MET; else the pooled sample): B = 200 draws of
  multinomial(n_ref, q) (and of multinomial(n, q) for a sampled result) give the null distribution
  of H^2, which is matched in mean and variance by a scaled chi-square a * chi2(nu) (Pearson's
  8 n_eff H^2 ~ chi2 asymptotics, made robust to sparse tails by fitting a and nu), whose
  1 - alpha/(10 m) quantile sets the floor (10x margin for the tail approximation, see
  FLOOR_MARGIN). The bootstrap is seeded from ``seed``.

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
           "hellinger", "noise_floor", "verdict"]
N_BOOTSTRAP = 200
# The scaled chi-square tail was checked by simulation against 20,000 direct draws: within a factor
# of ~4 of the nominal level at 1e-3 on sparse heavy-tailed marginals (negative binomial), exact on
# Poisson ones. The floor is set at level / FLOOR_MARGIN so that the Hellinger test stays at or
# below its share of alpha.
FLOOR_MARGIN = 10.0


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """Per time and species comparison of a result with a libroadrunner reference ensemble."""

    model: str
    method: str
    table: pd.DataFrame = field(repr=False)
    n_reference: int
    n_result: int | None  # trajectories behind the result (None: an exact distribution)
    alpha: float
    z_critical: float
    reference: SSAResult = field(repr=False)
    result: Distribution = field(repr=False)

    @property
    def ok(self) -> bool:
        """True when no check disagrees beyond sampling noise."""
        return bool((self.table["verdict"] == "ok").all())

    def to_frame(self) -> pd.DataFrame:
        """time, species, method, mean, reference_mean, z, std, reference_std, hellinger,
        noise_floor, verdict (``ok``, or which of mean/std/distribution differ)."""
        return self.table.copy()

    def failures(self) -> pd.DataFrame:
        """Rows whose verdict is not ``ok``."""
        return self.table[self.table["verdict"] != "ok"].reset_index(drop=True)

    def summary(self) -> str:
        """One paragraph a biologist can read: what was compared, the verdict, where it fails."""
        t = self.table
        n_checks = len(t)
        sampled = (f"an ensemble of {self.n_result:,} trajectories" if self.n_result
                   else "an exact distribution")
        head = (f"The {self.method} result for model '{self.model}' ({sampled}) was compared with "
                f"{self.n_reference:,} libroadrunner Gillespie trajectories of the same SBML at "
                f"{t['time'].nunique()} times x {t['species'].nunique()} species ({n_checks} checks "
                f"of mean, standard deviation and marginal distribution). ")
        rule = (f"A check fails when the means differ by more than {self.z_critical:.2f} standard "
                f"errors, the variances likewise, or the Hellinger distance between the marginals "
                f"exceeds the noise floor expected from sampling alone; a correct result fails any "
                f"check with probability at most {self.alpha:g}.")
        if self.ok:
            return head + "Verdict: OK, every check agrees within sampling noise. " + rule
        bad = self.failures()
        parts = []
        for s, g in bad.groupby("species", sort=False):
            times = ", ".join(f"{x:g}" for x in g["time"])
            parts.append(f"{s} at t = {times}")
        worst = bad.loc[bad["z"].abs().replace(np.inf, 1e300).idxmax()]
        return (head + f"Verdict: DISAGREES at {len(bad)} of {n_checks} checks: " + "; ".join(parts)
                + f". Largest: {worst['species']} at t = {worst['time']:g}, mean {worst['mean']:.4g} vs "
                f"reference {worst['reference_mean']:.4g} (z = {worst['z']:.3g}), Hellinger "
                f"{worst['hellinger']:.3g} vs noise floor {worst['noise_floor']:.3g}. " + rule)

    def plot(self, times: Any = None, species: Any = None, max_times: int = 4):
        """Marginals side by side (rows: times, columns: species): the result's probabilities and
        the reference histogram. Failing checks are titled in red. Returns a matplotlib Figure."""
        from matplotlib.figure import Figure

        all_times = list(dict.fromkeys(self.table["time"]))
        sp = list(species) if species is not None else list(dict.fromkeys(self.table["species"]))
        if times is None:
            bad = list(dict.fromkeys(self.failures()["time"]))
            pick = bad[:max_times] if bad else []
            rest = [all_times[int(i)] for i in np.linspace(0, len(all_times) - 1,
                                                           min(max_times, len(all_times)))]
            times = sorted(dict.fromkeys(pick + [x for x in rest if x not in pick]))[:max_times]
        times = [float(x) for x in times]
        fig = Figure(figsize=(3.2 * len(sp), 2.4 * len(times)), layout="constrained")
        axes = fig.subplots(len(times), len(sp), squeeze=False)
        idx = self.table.set_index(["time", "species"])
        for r, t in enumerate(times):
            for c, s in enumerate(sp):
                ax = axes[r, c]
                j = int(np.argmin(np.abs(self.reference.times - t)))
                ref = _counts_pmf(self.reference.states[:, j, self.reference.species.index(s)])
                res = self.result.marginal(s, t)
                x = np.arange(max(len(ref), len(res)))
                ax.bar(x, ref.reindex(x, fill_value=0.0), width=1.0, color="0.75",
                       label=f"roadrunner (n={self.n_reference:,})")
                ax.step(x, res.reindex(x, fill_value=0.0), where="mid", color="C0", lw=1.5,
                        label=self.method)
                row = idx.loc[(t, s)] if (t, s) in idx.index else None
                colour = "red" if row is not None and row["verdict"] != "ok" else "black"
                ax.set_title(f"{s}, t={t:g}" + (f"  H={row['hellinger']:.3f}" if row is not None else ""),
                             fontsize=9, color=colour)
                if r == len(times) - 1:
                    ax.set_xlabel("count")
                if c == 0:
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
def _counts_pmf(x: np.ndarray) -> pd.Series:
    """Empirical pmf of whole counts as a Series indexed 0..max."""
    c = np.asarray(np.round(x), dtype=np.int64)
    if c.size and c.min() < 0:
        raise InvalidArgumentError("negative molecule counts cannot be validated")
    p = np.bincount(c) / c.size
    return pd.Series(p, index=pd.RangeIndex(len(p), name="count"), name="probability")


def _moments(p: np.ndarray) -> tuple[float, float, float]:
    """Mean, variance and fourth central moment of a pmf over counts 0..len-1."""
    x = np.arange(p.size, dtype=float)
    p = p / p.sum()
    m = float(p @ x)
    d = x - m
    return m, float(p @ d**2), float(p @ d**4)


def _noise_floor(q: np.ndarray, n_ref: int, n_res: int | None, level: float, rng) -> float:
    """Hellinger distance that sampling noise alone exceeds with probability ``level``."""
    q = np.clip(q, 0.0, None)
    q = q / q.sum()
    if np.count_nonzero(q) <= 1:
        return 0.0
    from scipy.stats import chi2

    a = rng.multinomial(n_ref, q, size=N_BOOTSTRAP) / n_ref
    b = (rng.multinomial(n_res, q, size=N_BOOTSTRAP) / n_res) if n_res else q[None, :]
    h2 = np.clip(1.0 - np.sqrt(a * b).sum(axis=1), 0.0, None)
    mean, var = float(h2.mean()), float(h2.var(ddof=1))
    if mean <= 0 or var <= 0:
        return float(np.sqrt(h2.max()))
    scale, dof = var / (2 * mean), 2 * mean**2 / var
    return float(np.sqrt(scale * chi2.isf(level, dof)))


def _se_ratio(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return 0.0 if abs(diff) <= 1e-9 else float(np.copysign(np.inf, diff))


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
    else:
        if reference.times.shape != times.shape or not np.allclose(reference.times, times):
            raise InvalidArgumentError("the reference must be recorded on the result's times")
    n_ref = reference.n
    # per (time, species): marginals and moments of both sides
    rows = []
    for j, t in enumerate(times):
        for s in dist.species:
            ref = _counts_pmf(reference.states[:, j, reference.species.index(s)])
            if isinstance(result, SSAResult):
                res = _counts_pmf(result.states[:, j, result.species.index(s)])
            else:
                res = dist.marginal(s, t)
            rows.append((float(t), s, ref, res))
    m = 3 * max(1, sum(1 for _, _, ref, res in rows if len(ref) > 1 or len(res) > 1))
    level = alpha / m
    z_crit = float(norm.isf(level / 2))
    rng = np.random.default_rng([int(seed) if seed is not None else 0, 0x5EED])
    out = []
    for t, s, ref, res in rows:
        k = max(len(ref), len(res))
        p_ref = ref.reindex(range(k), fill_value=0.0).to_numpy(float)
        p_res = res.reindex(range(k), fill_value=0.0).to_numpy(float)
        mu_r, var_r, m4_r = _moments(p_ref)
        mu, var, m4 = _moments(p_res)
        if n_result:  # sample variance (ddof=1), as SSAResult.moments reports it
            var = var * n_result / max(n_result - 1, 1)
        var_r = var_r * n_ref / max(n_ref - 1, 1)
        if n_result:  # two samples: Welch standard errors
            se_mean2 = var_r / n_ref + var / n_result
            se_var2 = max(m4_r - var_r**2, 0.0) / n_ref + max(m4 - var**2, 0.0) / n_result
        else:  # exact result: the reference's standard error, its spread at least the result's
            se_mean2 = max(var_r, var) / n_ref
            se_var2 = max(m4_r - var_r**2, m4 - var**2, 0.0) / n_ref
        z = _se_ratio(mu - mu_r, float(np.sqrt(se_mean2)))
        z_var = _se_ratio(var - var_r, float(np.sqrt(se_var2)))
        h = hellinger(ref, res)
        q = (p_ref * n_ref + p_res * n_result) / (n_ref + n_result) if n_result else p_res
        floor = _noise_floor(q, n_ref, n_result, level / FLOOR_MARGIN, rng)
        failed = []
        if not abs(z) <= z_crit:
            failed.append("mean")
        if not abs(z_var) <= z_crit:
            failed.append("std")
        if h > floor + 1e-9:
            failed.append("distribution")
        verdict = "ok" if not failed else "differs: " + ", ".join(failed)
        out.append((t, s, method, mu, mu_r, z, float(np.sqrt(var)), float(np.sqrt(var_r)), h, floor,
                    verdict))
    table = pd.DataFrame(out, columns=COLUMNS)
    return ValidationReport(model=network.name, method=method, table=table, n_reference=n_ref,
                            n_result=n_result, alpha=alpha, z_critical=z_crit, reference=reference,
                            result=dist)
