"""Run and score the SBML discrete stochastic models test suite (DSMTS).

The suite's rule: with n trajectories, at each output time the sample mean X_t and standard
deviation S_t of each checked species give Z_t = sqrt(n) (X_t - mu_t) / sigma_t, which must lie in
(-3, 3), and Y_t = sqrt(n/2) (S_t^2 / sigma_t^2 - 1), which must lie in (-5, 5); where sigma_t is
0 the sample must equal mu_t exactly. A correct simulator fails a few single checks by chance, so a
case passes when at most ``max_fail_fraction`` of its checks fail (default 5%: the suite expects
~2-3 Z and ~5-6 Y failures over all 39 cases at n = 10,000, far below 5% of any case's checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError
from .metrics import y_scores, z_scores
from .sbml import load_sbml
from .ssa import simulate

LEVELS = ("l3v1", "l2v4")


@dataclass(frozen=True)
class CaseSettings:
    start: float
    duration: float
    steps: int
    variables: tuple[str, ...]

    @property
    def times(self) -> np.ndarray:
        return np.linspace(self.start, self.start + self.duration, self.steps + 1)


def read_settings(path: Path) -> CaseSettings:
    fields = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    try:
        return CaseSettings(float(fields["start"]), float(fields["duration"]), int(fields["steps"]),
                            tuple(v.strip() for v in fields["variables"].split(",") if v.strip()))
    except (KeyError, ValueError) as e:
        raise InvalidArgumentError(f"{path}: not a DSMTS settings file ({e})") from None


@dataclass(frozen=True)
class CaseResult:
    case: str
    level: str
    n: int
    z_failed: int
    y_failed: int
    checks: int
    max_fail_fraction: float

    @property
    def passed(self) -> bool:
        return (self.z_failed + self.y_failed) <= self.max_fail_fraction * 2 * self.checks

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return (f"{self.case} {self.level}: Z failed {self.z_failed}/{self.checks}, "
                f"Y failed {self.y_failed}/{self.checks}  {verdict}")


def case_folders(directory: str | Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise InvalidArgumentError(f"no such DSMTS folder: {d}")
    folders = sorted(p for p in d.iterdir() if p.is_dir() and (p / f"{p.name}-settings.txt").exists())
    if not folders:
        raise InvalidArgumentError(f"{d} holds no DSMTS case folders (NNNNN/NNNNN-settings.txt)")
    return folders


def run_case(folder: str | Path, n: int = 10_000, seed: int | None = 1, level: str = "l3v1",
             max_fail_fraction: float = 0.05) -> tuple[CaseResult, pd.DataFrame]:
    """Simulate one case and score it; returns the verdict and a table of Z and Y per check."""
    folder = Path(folder)
    case = folder.name
    settings = read_settings(folder / f"{case}-settings.txt")
    expected = pd.read_csv(folder / f"{case}-results.csv")
    net = load_sbml(folder / f"{case}-sbml-{level}.xml")
    result = simulate(net, settings.times, n=n, seed=seed)
    rows = []
    for v in settings.variables:
        i = net.species_index(v)
        x = result.states[:, :, i]
        mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
        mu, sigma = expected[f"{v}-mean"].to_numpy(), expected[f"{v}-sd"].to_numpy()
        z = z_scores(mean, mu, sigma, n)
        y = y_scores(sd, sigma, n)
        for j, t in enumerate(settings.times):
            rows.append((case, level, float(t), v, mean[j], mu[j], sd[j], sigma[j], z[j], y[j]))
    table = pd.DataFrame(rows, columns=["case", "level", "time", "species", "mean", "reference_mean",
                                        "std", "reference_std", "z", "y"])
    z_fail = int((~(np.abs(table["z"]) < 3)).sum())
    y_fail = int((~(np.abs(table["y"]) < 5) & (table["reference_std"] > 0)).sum())
    checks = len(table)
    return CaseResult(case, level, n, z_fail, y_fail, checks, max_fail_fraction), table
