"""Sweep over curated BioModels entries: does sbml_met load each one, and does its SSA agree with
libroadrunner's gillespie on the ones it loads?

    python bench/biomodels_sweep.py [--entries BIOMD0000000012,35] [--n 200] [--timeout 120]
                                    [--events 1000] [--seed 1] [--out sweep.csv] [--no-copasi]

Entries: every ``*.xml`` in ``../shared/biomodels/`` (INDEX.tsv gives the sha256 of each file; a
mismatch is printed) and in ``tests/data/biomodels/`` (shown as ``<id>@tests``).

Per entry, in a fresh forked process killed after ``--timeout`` seconds (status ``timeout``):

1. Classify.
   - ``amounts``: ``sbml_met.load_sbml(path)`` works.
   - ``volume``: that is refused, ``sbml_met.load_sbml(path, volume=V)`` works. ``volume`` is the
     number of molecules per unit of the model's substance amount (``to_counts``: every species
     starts at round(concentration x compartment size x V)). Rule for V: the median of the
     positive initial amounts a (initialAmount, or initialConcentration x compartment size, read
     with libsbml; 1 if none is positive) is brought to ~300 molecules with a power of ten,
     V = 10 ** round(log10(300 / median a)): the typical species then starts with ~100-1000
     molecules.
   - ``refused``: both attempts raise ``UnsupportedSBMLError``. The reasons shown (and counted in
     the totals) are those of the ``volume=`` attempt when the model is in concentrations (some
     species has a non-whole initial amount, as libsbml reads it), else those of the plain load;
     the CSV holds both. Each ``Unsupported.feature`` is normalised to a short category
     (``_CATEGORIES``).
   - ``error``: another ``SbmlMetError`` (SBMLParseError, ...): typed, but not a refusal.
   - ``crashed``: any exception that is not an ``SbmlMetError``; its type, message and the
     traceback's last frame are printed. Must be none.
2. For a loaded network, horizon T = events / a0 (a0: the total propensity at the initial state;
   T = 1 when a0 is 0), output times T/5, 2T/5, ..., T. A pilot ``simulate`` of 2 trajectories
   runs with an alarm of timeout/6 s (for the lock-step kernel, whose time barely grows with n, the
   ensemble itself runs instead, under the ensemble's alarm): if the alarm fires, or the pilot took more than timeout/12 s,
   the pilot reruns with ``method="tau-leap"`` (as ``sbml-met run --method auto`` takes tau-leaping
   where exact SSA is too slow; the verdict then starts "tau-leap:"), and if that is slow too the
   entry is ``slow`` and not compared. Otherwise ``--n`` SSA trajectories
   (``sbml_met.simulate``) and ``--n`` libroadrunner gillespie trajectories
   (``sbml_met.tellurium.run_gillespie`` on the loaded network, one process) are compared by their
   means: two-sample z = (m1 - m2) / sqrt(s1^2/n1 + s2^2/n2) for every species x time with a
   nonzero standard error (equal-constant columns agree; different constants count as a
   difference), Bonferroni over those m tests at familywise alpha 0.001 (|z| > z_{1-alpha/(2m)}).
   Any SSA count < 0 is a bug and reported (``neg``); libroadrunner's own failures (load, refusal,
   non-whole or negative amounts) go in the ``rr`` column, never abort the sweep. For an entry that
   does not load, ``rr`` says whether libroadrunner's gillespie runs the ORIGINAL file at all
   (one trajectory to t = 1).
   COPASI (``--no-copasi`` leaves it out): whether COPASI (copasi-basico) simulates the ORIGINAL
   file with its direct method, without negative species amounts (own units, or quantity unit '#' when its particle numbers are too big: 'ok with
   #'; reversible reactions split by convert2NonReversible; 20 s cap).
3. ``x0``: the ORIGINAL file loaded in libroadrunner (no simulation) gives each species' initial
   amount; x ``V`` in volume mode, x molecules per substance unit in amounts mode (Avogadro x scale
   for mole-based units, ``substance_factors``; undeclared units: counts). sbml_met's initial_state must equal it within 0.5 molecules
   (``x0 MISMATCH`` otherwise), and in amounts mode a non-whole reference amount means the loader
   rounded a fractional amount silently (``x0 ROUNDED``); ``ok (max 1e+14)`` flags initial counts
   >= 1e7 (SSA then covers only a tiny horizon).

4. ``ode`` (converted entries: ``volume=``, or amounts in mole-based units): SSA means against
   libroadrunner's deterministic (CVODE) solution of the ORIGINAL file times the conversion
   factor, at points with >= LARGE molecules, within ODE_REL x ode + 4 SE.

Prints one table (entry, name, status, reason/verdict, species, reactions, seconds, rr, x0, neg,
ode, copasi), the totals by status, by verdict and by refusal reason (entries and elements, with
an example), and both coverages: entries sbml_met simulates (loaded, SSA ran) and COPASI runs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import multiprocessing as mp
import os
import re
import signal
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "biomodels"
TESTS_DATA = REPO / "tests" / "data" / "biomodels"
ALPHA = 1e-3
LARGE = 100.0  # deterministic counts from which the ODE check applies
ODE_REL = 0.10  # relative tolerance of the SSA mean against the deterministic limit
TARGET = 300.0  # typical molecule count for the volume= rule

# (regex on Unsupported.feature, category), first match wins
_CATEGORIES: list[tuple[str, str]] = [
    (r"reversible reaction", "reversible law not 'forward - reverse'"),
    (r"not mass action", "non-mass-action law (volume=)"),
    (r"rate rule", "rate rule"),
    (r"event assignment to .*only species", "event assigns a non-species"),
    (r"event assignment to parameter .*state-dependent trigger", "event assigns a parameter (state trigger)"),
    (r"event assignment to .*assignment rule", "event assigns a rule variable"),
    (r"not a whole number", "fractional initial amount"),
    (r"not a molecule count", "negative/invalid initial amount"),
    (r"species in amount units used in", "amount-unit species in rule/IA/event (volume=)"),
    (r"compartment size used in", "compartment size in rule/IA/event (volume=)"),
    (r"without an initial amount", "species without initial amount"),
    (r"non-integer stoichiometry", "non-integer stoichiometry"),
    (r"stoichiometryMath|variable stoichiometry", "variable stoichiometry"),
    (r"depends on time|triggered by time|time other than", "time-dependent law/trigger"),
    (r"delay", "event delay"),
    (r"priorit", "event priority"),
    (r"algebraic rule", "algebraic rule"),
    (r"SBML package", "SBML package"),
    (r"compartment whose size changes|initial assignment to a compartment", "variable compartment"),
    (r"fast reaction", "fast reaction"),
    (r"conversion factor", "conversion factor"),
    (r"negative branch|negative propensity", "negative propensity"),
    (r"without a kinetic law", "reaction without kinetic law"),
    (r"without a value|parameter value", "parameter without/invalid value"),
    (r"circular", "circular rules"),
]


def reason_category(feature: str) -> str:
    """Short category of an ``Unsupported.feature`` string."""
    for pat, cat in _CATEGORIES:
        if re.search(pat, feature, flags=re.I):
            return cat
    short = re.sub(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.eE+-]*", "_", feature)
    return "other: " + short.split("(")[0].strip()[:40]


# ------------------------------------------------------------------------------------------ entries
def read_index() -> dict[str, str]:
    """file name -> sha256 from ../shared/biomodels/INDEX.tsv."""
    out = {}
    idx = SHARED / "INDEX.tsv"
    if idx.is_file():
        for line in idx.read_text(encoding="utf-8").splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 4:
                out[cols[1]] = cols[3]
    return out


def list_entries() -> list[tuple[str, Path]]:
    """(label, path) of every SBML file of the sweep."""
    out = []
    if SHARED.is_dir():
        out += [(p.stem, p) for p in sorted(SHARED.glob("*.xml"))]
    if TESTS_DATA.is_dir():
        out += [(f"{p.stem}@tests", p) for p in sorted(TESTS_DATA.glob("*.xml"))]
    return out


# ------------------------------------------------------------------------------------------ model facts
def model_facts(path: Path) -> dict:
    """Name, whether it is a concentration model, and the volume= rule's V (libsbml only)."""
    import libsbml

    doc = libsbml.readSBMLFromFile(str(path))
    m = doc.getModel()
    if m is None:
        return {"name": "", "concentration": False, "V": 1.0}
    from sbml_met.sbml import _literal_amounts, suggest_volume

    amounts = [a for a in _literal_amounts(m) if math.isfinite(a)]
    conc_model = any(abs(a - round(a)) > 1e-9 * max(1.0, abs(a)) for a in amounts)
    V = suggest_volume(str(path), TARGET)
    return {"name": m.getName() or m.getId(), "concentration": conc_model, "V": V}


# ------------------------------------------------------------------------------------------ stats
def compare_means(a, b, alpha: float = ALPHA) -> tuple[bool, str, float, int]:
    """Two-sample z on means per (time, species), Bonferroni over the tested cells.
    Returns (agree, text, max |z|, m)."""
    import numpy as np

    n1, n2 = a.shape[0], b.shape[0]
    m1, m2 = a.mean(0), b.mean(0)
    v1, v2 = a.var(0, ddof=1), b.var(0, ddof=1)
    se = np.sqrt(v1 / n1 + v2 / n2)
    diff = m1 - m2
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(np.abs(diff) > 1e-9 * (1 + np.abs(m1)), np.inf, 0.0))
    tested = (se > 0) | np.isinf(z)
    m = int(tested.sum())
    if m == 0:
        return True, "agree (all constant)", 0.0, 0
    zc = statistics.NormalDist().inv_cdf(1 - alpha / (2 * m))
    bad = np.abs(z) > zc
    zmax = float(np.max(np.abs(z[tested])))
    if not bad.any():
        return True, f"agree max|z|={zmax:.2f} (m={m}, zc={zc:.2f})", zmax, m
    ti, si = np.unravel_index(int(np.argmax(np.abs(np.where(tested, z, 0)))), z.shape)
    return False, f"DIFFER {int(bad.sum())}/{m} worst t#{ti + 1} sp#{si} z={float(z[ti, si]):.1f}", zmax, m


# ------------------------------------------------------------------------------------------ worker
class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


def _last_frame(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f"{os.path.relpath(f.filename, REPO) if f.filename.startswith(str(REPO)) else f.filename}:{f.lineno} in {f.name}: {f.line}"


_WARNED: list[str] = []  # warnings of the last successful load (kept for the CSV, not the table)


def _try_load(path: Path, volume):
    """('ok', net) | ('refused', reasons) | ('error', text) | ('crashed', info)."""
    import sbml_met
    from sbml_met.errors import SbmlMetError, UnsupportedSBMLError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = sbml_met.load_sbml(path, volume=volume)
        _WARNED[:] = [f"{type(w.message).__name__}: {w.message}" for w in caught]
        return "ok", net
    except UnsupportedSBMLError as e:
        return "refused", [(r.element_id, r.feature) for r in e.reasons]
    except SbmlMetError as e:
        return "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    except Exception as e:  # noqa: BLE001 - the point of the sweep
        return "crashed", {"type": type(e).__name__, "message": str(e)[:500], "frame": _last_frame(e),
                           "traceback": traceback.format_exc()}


def _rescaled_volume(path: Path, reasons) -> float | None:
    """A volume= that brings counts refused as beyond 2^53 (amounts set by initial assignments,
    which model_facts cannot see) to about TARGET molecules; None if no such refusal."""
    from sbml_met.sbml import molecules_per_substance_unit, read_document

    counts = [float(m.group(1)) for _, f in reasons
              if (m := re.search(r"initial count ([0-9.e+]+) is beyond 2\^53", f))]
    if not counts:
        return None
    factor = molecules_per_substance_unit(read_document(path)) or 1.0  # what load_sbml used
    return 10.0 ** round(math.log10(factor * TARGET / max(counts)))


def run_entry(label: str, path: Path, n: int, timeout: float, events: float, seed: int) -> dict:
    """Everything about one entry (runs in the child process)."""
    t_start = time.perf_counter()
    row: dict = {"entry": label, "status": "", "reason": "", "verdict": "", "n_species": "",
                 "n_reactions": "", "V": "", "rr": "", "x0": "", "neg": "", "seconds": 0.0,
                 "ssa_s": "", "rr_s": "", "horizon": "", "ode": "", "reasons_amounts": "", "reasons_volume": "",
                 "categories": "", "crash": None}
    try:
        facts = model_facts(path)
    except Exception as e:  # noqa: BLE001
        facts = {"name": "", "concentration": False, "V": 1.0}
        row["verdict"] = f"libsbml facts failed: {type(e).__name__}: {e}"
    row["name"] = facts["name"]

    def fmt(reasons):
        return "; ".join(f"{eid}: {feat}" for eid, feat in reasons)

    kind, res = _try_load(path, None)
    volume = None
    if kind == "refused":
        row["reasons_amounts"] = fmt(res)
        amounts_reasons = res
        volume = facts["V"]
        kind_v, res_v = _try_load(path, volume)
        if kind_v == "refused":
            row["reasons_volume"] = fmt(res_v)
            primary = res_v if facts["concentration"] else res
        if kind_v in ("ok", "error", "crashed"):
            kind, res = kind_v, res_v
        else:
            res = primary
            rescaled = _rescaled_volume(path, amounts_reasons)
            kind_r, res_r = _try_load(path, rescaled) if rescaled else ("refused", res)
            if kind_r in ("ok", "error", "crashed"):
                kind, res, volume = kind_r, res_r, rescaled
    if kind == "crashed":
        row.update(status="crashed", reason=f"{res['type']}: {res['message'][:120]}", crash=res)
    elif kind == "error":
        row.update(status="error", reason=res)
    elif kind == "refused":
        cats = Counter(reason_category(f) for _, f in res)
        row["status"] = "refused"
        row["categories"] = [(reason_category(f), eid, f) for eid, f in res]
        row["reason"] = ", ".join(f"{c} x{k}" for c, k in cats.most_common())
    if kind != "ok":
        row["rr"] = _rr_original(path)
        row["seconds"] = time.perf_counter() - t_start
        return row

    net = res
    row["warnings"] = " | ".join(_WARNED)
    row.update(status="amounts" if volume is None else "volume", V=volume or "",
               n_species=net.n_species, n_reactions=net.n_reactions)
    _simulate_and_compare(row, net, path, volume, n, timeout, events, seed, t_start)
    row["seconds"] = time.perf_counter() - t_start
    return row


def _simulate_capped(row: dict, net, times, n: int, seed: int, cap: float, what: str, method: str = "direct"):
    """sbml_met.simulate (``method``) under an alarm of ``cap`` seconds; None (the row says why)
    if it is slower, raises a typed error, or crashes."""
    import sbml_met
    from sbml_met.errors import SbmlMetError

    try:
        signal.setitimer(signal.ITIMER_REAL, cap)
        return sbml_met.simulate(net, times, n=n, seed=seed, method=method, progress=False)
    except _Alarm:
        row["verdict"] = f"slow ({what} > {cap:.0f} s)"
    except SbmlMetError as e:
        row["verdict"] = f"ssa error: {type(e).__name__}: {str(e)[:120]}"
    except Exception as e:  # noqa: BLE001 - the point of the sweep: a crash is a finding
        row["status"] = "crashed"
        row["crash"] = {"type": type(e).__name__, "message": str(e)[:500], "frame": _last_frame(e),
                        "traceback": traceback.format_exc()}
        row["reason"] = f"{type(e).__name__} in simulate: {str(e)[:100]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def _simulate_and_compare(row, net, path, volume, n, timeout, events, seed, t_start) -> None:
    import numpy as np

    import sbml_met
    from sbml_met.errors import SbmlMetError

    # horizon from the initial total propensity
    try:
        a0 = float(np.sum(net.propensities(net.initial_state))) if net.n_reactions else 0.0
    except SbmlMetError as e:
        row["verdict"] = f"ssa error at t=0: {type(e).__name__}: {str(e)[:120]}"
        return
    except Exception as e:  # noqa: BLE001
        row["status"] = "crashed"
        row["crash"] = {"type": type(e).__name__, "message": str(e)[:500], "frame": _last_frame(e),
                        "traceback": traceback.format_exc()}
        row["reason"] = f"{type(e).__name__} in propensities: {str(e)[:100]}"
        return
    T = events / a0 if a0 > 0 and math.isfinite(a0) else 1.0
    times = np.linspace(T / 5, T, 5)
    row["horizon"] = f"{T:.3g}"

    # pilot
    from sbml_met.cost import kernel_kind

    signal.signal(signal.SIGALRM, _on_alarm)
    pilot_cap = max(1.0, timeout / 6)
    method = "direct"
    t0 = time.perf_counter()
    ssa = None
    if kernel_kind(net) == "vectorised" and not net.time_varying:
        # the lock-step kernel (events, species rules) advances all n trajectories per step, so its time
        # barely grows with n and a 2-trajectory pilot overstates the ensemble ~n/2-fold: run the ensemble
        remaining = timeout - (time.perf_counter() - t_start) - 5
        ssa = _simulate_capped(row, net, times, n, seed, max(1.0, remaining * 0.6), f"lock-step SSA n={n}")
        ok = ssa is not None
        pilot = 0.0
        if ok:
            row["ssa_s"] = f"{time.perf_counter() - t0:.2f}"
    else:
        ok = _simulate_capped(row, net, times, 2, seed, pilot_cap, "pilot n=2") is not None
        pilot = time.perf_counter() - t0
    if ok and pilot > timeout / 12:
        ok, row["verdict"] = False, f"slow (pilot n=2 took {pilot:.1f} s)"
    if not ok and str(row.get("verdict", "")).startswith("slow") and row.get("status") != "crashed":
        # exact SSA too slow: tau-leaping, as `sbml-met run --method auto` would take
        slow, method = row["verdict"], "tau-leap"
        t0 = time.perf_counter()
        ok = _simulate_capped(row, net, times, 2, seed, pilot_cap, "tau-leap pilot n=2", method) is not None
        pilot = time.perf_counter() - t0
        if ok and pilot > timeout / 12:
            ok, row["verdict"] = False, f"slow (tau-leap pilot n=2 took {pilot:.1f} s)"
        if not ok and row.get("status") != "crashed":
            row["verdict"] = f"{slow}; tau-leap: {row.get('verdict', '')}"
    if not ok:
        return
    row["method"] = method

    # SSA ensemble
    if ssa is None or method != "direct":
        t0 = time.perf_counter()
        remaining = timeout - (time.perf_counter() - t_start) - 5
        ssa = _simulate_capped(row, net, times, n, seed, max(1.0, remaining * 0.6), f"SSA n={n}", method)
        if ssa is None:
            return
        row["ssa_s"] = f"{time.perf_counter() - t0:.2f}"
    values = np.array([s.rule or getattr(s, "continuous", False) for s in net.species_info], dtype=bool)
    neg = (ssa.states < 0) & ~values  # species defined by rules are values (the model's algebra)
    row["neg"] = int(neg.any(axis=(1, 2)).sum())
    if neg.any():
        bad = [net.species[j] for j in np.flatnonzero(neg.any(axis=(0, 1)))]
        row["neg"] = f"{row['neg']} traj ({','.join(bad[:3])})"

    # libroadrunner on the loaded network (sbml_met's SBML of it)
    from sbml_met.tellurium import run_gillespie

    t0 = time.perf_counter()
    rr = None
    try:
        remaining = timeout - (time.perf_counter() - t_start) - 3
        signal.setitimer(signal.ITIMER_REAL, max(1.0, remaining))
        rr = run_gillespie(net, times, n=n, seed=seed + 1, processes=1, progress=False)
        signal.setitimer(signal.ITIMER_REAL, 0)
        row["rr"] = "ok"
    except _Alarm:
        row["rr"] = "slow"
    except Exception as e:  # noqa: BLE001 - roadrunner failing is a column, not a crash
        signal.setitimer(signal.ITIMER_REAL, 0)
        cat = reason_category(e.reasons[0].feature) if hasattr(e, "reasons") else ""
        row["rr"] = f"{type(e).__name__}: {cat or str(e).splitlines()[0][:80]}"
    row["rr_s"] = f"{time.perf_counter() - t0:.2f}"
    if rr is not None:
        x = rr.states
        notes = []
        ruled = {getattr(r, "variable", None) for r in getattr(net, "rules", ())}
        counted = [j for j, sp in enumerate(net.species) if sp not in ruled]  # rule species may be fractional
        xc = x[..., counted]
        if np.any(np.abs(xc - np.round(xc)) > 1e-6 + 1e-12 * np.abs(xc)):
            notes.append("non-whole")
        if np.any(x < 0):
            notes.append(f"neg in {int((x < 0).any(axis=(1, 2)).sum())} traj")
        if notes:
            row["rr"] = "ok (" + ", ".join(notes) + ")"
        agree, text, _, _ = compare_means(ssa.states, x)
        if not agree:
            ti, si = (int(v) for v in re.findall(r"t#(\d+) sp#(\d+)", text)[0])
            text = text.replace(f"t#{ti} sp#{si}", f"{net.species[si]}@t{ti}")
        row["verdict"] = text
    else:
        row["verdict"] = "no reference"
    if method != "direct":
        row["verdict"] = f"{method}: {row['verdict']}"

    # initial amounts of the original file in libroadrunner
    row["x0"] = _check_x0(net, path, volume)
    row["ode"] = _ode_check(net, path, volume, times, ssa.states)


def _ode_check(net, path: Path, volume, times, states) -> str:
    """For a converted entry (volume=, or amounts in mole-based units): SSA means against
    libroadrunner's deterministic (CVODE) solution of the ORIGINAL file times the conversion
    factor, at the output times, for counted species whose deterministic count is >= LARGE. A
    point agrees when |mean - ode| <= ODE_REL x ode + 4 SE (the deterministic limit holds up to
    O(1/count) corrections). '' for entries read as counts."""
    import numpy as np

    factors = {sid: float(volume) for sid in net.species} if volume else substance_factors(path)
    if all(f == 1.0 for f in factors.values()):
        return ""
    try:
        import roadrunner

        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_FATAL)
        r = roadrunner.RoadRunner(str(path))
        ids = set(r.model.getFloatingSpeciesIds()) | set(r.model.getBoundarySpeciesIds())
        cols = [j for j, s in enumerate(net.species_info)
                if s.id in ids and not (s.rule or getattr(s, "continuous", False))]
        grid = np.concatenate([[0.0], np.asarray(times, dtype=float)])
        sol = r.simulate(times=grid.tolist(), selections=[net.species[j] for j in cols]) if cols else None
    except Exception as e:  # noqa: BLE001 - roadrunner failing is a column
        return f"ode failed: {str(e).splitlines()[0][:50] if str(e) else type(e).__name__}"
    if sol is None:
        return "ode: no species"
    ode = np.asarray(sol)[1:] * np.array([factors.get(net.species[j], 1.0) for j in cols])
    mean = states[:, :, cols].mean(axis=0)
    se = states[:, :, cols].std(axis=0, ddof=1) / math.sqrt(states.shape[0])
    large = ode >= LARGE
    if not large.any():
        return "ode: counts small"
    dev = np.where(large, np.abs(mean - ode) - ODE_REL * ode - 4 * se, -np.inf)
    rel = np.where(large, np.abs(mean - ode) / np.maximum(ode, 1e-300), 0.0)
    if (dev > 0).any():
        ti, ci = np.unravel_index(int(np.argmax(dev)), dev.shape)
        return f"ode DIFFERS {net.species[cols[ci]]}@t{ti}: {rel[ti, ci]:.1%}"
    return f"ode ok (max {rel.max():.1%}, {int(large.sum())} pts)"


def _copasi_worker(conn, path: str, duration: float) -> None:
    import contextlib
    import io

    buf = io.StringIO()
    try:
        import basico

        def run(unit):
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                dm = basico.load_model(path)
                if unit:
                    basico.set_model_unit(quantity_unit=unit, model=dm)
                dm.getModel().convert2NonReversible()
                return basico.run_time_course(duration=duration, intervals=5, method="directMethod",
                                              use_seed=True, seed=1, model=dm)

        tc = run(None)
        if len(tc):
            conn.send(_copasi_verdict(tc, "ok"))
            return
        if "particle number" in buf.getvalue() and "too big" in buf.getvalue():
            buf.seek(0)
            buf.truncate()
            tc = run("#")
            if len(tc):
                conn.send(_copasi_verdict(tc, "ok with #"))
                return
        if True:
            lines = [ln.strip() for ln in buf.getvalue().splitlines()
                     if ln.strip() and "ERROR" not in ln and "Error while" not in ln]
            conn.send("fails: " + (lines[0][:70] if lines else "no output"))
    except Exception as e:  # noqa: BLE001
        conn.send(f"fails: {type(e).__name__}: {str(e)[:60]}")


def _copasi_verdict(tc, ok: str) -> str:
    """``ok``, or 'negative counts (...)' where COPASI's time course holds a negative species
    amount (a run that returns negative molecule numbers is no simulation of the model)."""
    species = [c for c in tc.columns if not str(c).startswith(("Values[", "Compartments["))]
    neg = [str(c) for c in species if (tc[c] < 0).any()]  # global quantities may be negative
    return f"negative counts ({', '.join(neg[:2])})" if neg else ok


def copasi_check(path: Path, duration: float = 1.0, cap: float = 20.0) -> str:
    """Does COPASI (basico) simulate the ORIGINAL file stochastically? Reversible reactions split
    with convert2NonReversible, direct method to ``duration``, in the model's own units (amounts in
    moles become amount x Avogadro particles): 'ok'. When COPASI refuses because a particle number
    is too big, again with quantity_unit '#' (every amount read as a molecule count): 'ok with #'.
    In a separate process, at most ``cap`` s."""
    try:
        import basico  # noqa: F401
    except ImportError:
        return "n/a"
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_copasi_worker, args=(b, str(path), duration), daemon=True)
    p.start()
    b.close()
    out = a.recv() if a.poll(cap) else None
    if out is None:
        if p.is_alive():
            p.kill()
        out = "slow" if p.exitcode is None or p.exitcode < 0 else f"died ({p.exitcode})"
    p.join(5)
    return out


def _rr_original(path: Path, cap: float = 10.0) -> str:
    """For an entry sbml_met does not run: does libroadrunner's gillespie run the ORIGINAL file
    (one trajectory to t = 1, at most ``cap`` seconds)? 'orig ok' / 'orig failed: ...'."""
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        import roadrunner

        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_FATAL)  # its warnings would break the table
        signal.setitimer(signal.ITIMER_REAL, cap)
        r = roadrunner.RoadRunner(str(path))
        r.setIntegrator("gillespie")
        r.integrator.seed = 1
        r.simulate(0, 1, 2)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return "orig ok"
    except _Alarm:
        return "orig slow"
    except Exception as e:  # noqa: BLE001 - roadrunner failing is a column
        signal.setitimer(signal.ITIMER_REAL, 0)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = re.sub(r"^(Error|Exception)[: ]*", "", msg)
        return f"orig failed: {msg[:60]}"


AVOGADRO = 6.02214076e23


def substance_factors(path: Path) -> dict[str, float]:
    """Molecules per unit of each species' substance unit, read independently of sbml_met: the
    species' substanceUnits, else the model's (Level 3) or 'substance' (Level 2); 'mole' ->
    Avogadro; a unit definition of one mole (or item) unit with exponent 1 -> Avogadro (or 1) x
    multiplier x 10^scale; anything else (undeclared, item, dimensionless) -> 1 (counts)."""
    import libsbml

    doc = libsbml.readSBMLFromFile(str(path))
    m = doc.getModel()
    out = {}
    for i in range(m.getNumSpecies()):
        sp = m.getSpecies(i)
        unit = sp.getSubstanceUnits() or (m.getSubstanceUnits() if doc.getLevel() > 2 else "substance")
        f = 1.0
        if unit == "mole":
            f = AVOGADRO
        elif unit:
            ud = m.getUnitDefinition(unit)
            if ud is not None and ud.getNumUnits() == 1 and ud.getUnit(0).getExponentAsDouble() == 1:
                u = ud.getUnit(0)
                if u.isMole():
                    f = AVOGADRO * u.getMultiplier() * 10.0 ** u.getScale()
                elif u.isItem():
                    f = u.getMultiplier() * 10.0 ** u.getScale()
        out[sp.getId()] = f
    return out


def _check_x0(net, path: Path, volume) -> str:
    import numpy as np

    try:
        import roadrunner

        r = roadrunner.RoadRunner(str(path))
    except Exception as e:  # noqa: BLE001
        return f"rr load failed: {str(e).splitlines()[0][:60] if str(e) else type(e).__name__}"
    ids = list(r.model.getFloatingSpeciesIds()) + list(r.model.getBoundarySpeciesIds())
    vals = np.concatenate([r.model.getFloatingSpeciesAmounts(), r.model.getBoundarySpeciesAmounts()])
    ref = dict(zip(ids, vals))
    factors = {} if volume else substance_factors(path)
    mism, rounded = [], []
    for s, x in zip(net.species_info, net.initial_state):
        sid = s.id
        if sid not in ref or (volume is None and (s.rule or getattr(s, "continuous", False))):
            continue  # values, not counts: nothing to round
        e = ref[sid] * (float(volume) if volume else factors.get(sid, 1.0))
        if abs(float(x) - e) > 0.5 + 1e-9 * abs(e):
            mism.append(f"{sid}={x:g} vs {e:.3g}")
        elif volume is None and abs(e - round(e)) > 1e-9 * max(1.0, abs(e)):
            rounded.append(f"{sid}: {e:.3g}->{x:g}")
    if mism:
        return f"MISMATCH {len(mism)} ({mism[0]})"
    if rounded:
        return f"ROUNDED {len(rounded)} ({rounded[0]})"
    top = float(np.max(net.initial_state)) if net.n_species else 0.0
    return "ok" if top < 1e7 else f"ok (max {top:.1e})"


def _child(conn, label, path, n, timeout, events, seed) -> None:
    try:
        row = run_entry(label, path, n, timeout, events, seed)
    except BaseException as e:  # noqa: BLE001 - report, never hang the parent
        row = {"entry": label, "status": "crashed", "reason": f"bench: {type(e).__name__}: {e}",
               "crash": {"type": type(e).__name__, "message": str(e), "frame": _last_frame(e),
                         "traceback": traceback.format_exc()}}
    conn.send(row)
    conn.close()


def run_isolated(label: str, path: Path, n: int, timeout: float, events: float, seed: int) -> dict:
    """run_entry in a forked process, killed after ``timeout`` seconds."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(child, label, path, n, timeout, events, seed), daemon=True)
    p.start()
    child.close()
    row = None
    if parent.poll(timeout + 10):
        try:
            row = parent.recv()
        except EOFError:
            row = None
    if row is None:
        alive = p.is_alive()
        if alive:
            p.kill()
        p.join(5)
        row = {"entry": label, "status": "timeout" if alive else "died",
               "reason": f"killed after {timeout:.0f} s" if alive else f"child exit code {p.exitcode}"}
    p.join(5)
    row["seconds"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------------------ report
def _simulated(row: dict) -> bool:
    """sbml_met loaded the entry and its SSA ran (whatever the comparison said)."""
    verdict = str(row.get("verdict") or "")
    return row.get("status") in ("amounts", "volume") and not verdict.startswith(("ssa error", "slow"))


def _cut(s, w):
    s = str(s if s is not None else "")
    return s if len(s) <= w else s[: w - 1] + "…"


COLUMNS = ["entry", "name", "status", "reason", "verdict", "n_species", "n_reactions", "V",
           "horizon", "method", "ssa_s", "rr_s", "seconds", "rr", "x0", "neg", "ode", "copasi", "warnings", "reasons_amounts", "reasons_volume"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", default="", help="comma-separated ids or id endings, e.g. 12,BIOMD0000000035 (default: all)")
    ap.add_argument("--n", type=int, default=200, help="trajectories per tool (default 200)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per entry (default 120)")
    ap.add_argument("--events", type=float, default=1000.0,
                    help="horizon = events / initial total propensity (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="", help="write every column to this CSV")
    ap.add_argument("--no-copasi", dest="copasi", action="store_false",
                    help="leave out the COPASI column (default: does COPASI, copasi-basico, simulate "
                         "the file stochastically, beside sbml_met)")
    args = ap.parse_args(argv)

    import sbml_met  # noqa: F401 - loaded once here, inherited by every forked entry (no roadrunner)

    entries = list_entries()
    if args.entries:
        want = [w.strip() for w in args.entries.split(",") if w.strip()]
        entries = [(lab, p) for lab, p in entries
                   if any(lab == w or lab.split("@")[0].endswith(w) for w in want)]
    if not entries:
        print(f"no SBML files found (looked in {SHARED} and {TESTS_DATA})")
        return 1
    index = read_index()
    for lab, p in entries:
        if p.parent == SHARED and p.name in index:
            if hashlib.sha256(p.read_bytes()).hexdigest() != index[p.name]:
                print(f"WARNING: {p.name} does not match its sha256 in INDEX.tsv")

    print(f"{len(entries)} entries; n = {args.n} trajectories per tool; timeout {args.timeout:.0f} s; "
          f"horizon = {args.events:g} events / a0; means: two-sample z, Bonferroni, alpha {ALPHA}")
    head = (f"{'entry':<20} {'name':<28} {'status':<8} {'reason / verdict':<64} {'sp':>4} {'rx':>4} "
            f"{'s':>6}  {'rr':<24} {'x0':<20} {'neg':<6} {'ode':<26}" + (" copasi" if args.copasi else ""))
    print(head)
    print("-" * len(head))
    rows = []
    for lab, p in entries:
        row = run_isolated(lab, p, args.n, args.timeout, args.events, args.seed)
        if args.copasi:  # from this process (an entry's process may be killed, COPASI with it)
            row["copasi"] = copasi_check(p, float(row["horizon"]) if row.get("horizon") else 1.0)
        rows.append(row)
        text = row.get("reason") if row.get("status") in ("refused", "error", "crashed", "timeout", "died") \
            else row.get("verdict")
        print(f"{_cut(lab, 20):<20} {_cut(row.get('name', ''), 28):<28} {row.get('status', ''):<8} "
              f"{_cut(text, 64):<64} {row.get('n_species', ''):>4} {row.get('n_reactions', ''):>4} "
              f"{row['seconds']:>6.1f}  {_cut(row.get('rr', ''), 24):<24} {_cut(row.get('x0', ''), 20):<20} "
              f"{_cut(row.get('neg', ''), 6):<6} {_cut(row.get('ode', ''), 26):<26}"
              + (f" {_cut(row.get('copasi', ''), 30)}" if args.copasi else ""),
              flush=True)

    # totals
    print()
    st = Counter(r.get("status", "") for r in rows)
    print("totals by status: " + ", ".join(f"{k} {v}" for k, v in st.most_common()) + f" (of {len(rows)})")
    loaded = [r for r in rows if r.get("status") in ("amounts", "volume")]
    vd = Counter(next((k for k in ("ssa error", "no reference") if (r.get("verdict") or "").startswith(k)),
                      (r.get("verdict") or "").split(" ")[0].split("(")[0] or "-") for r in loaded)
    print("loaded, by verdict: " + (", ".join(f"{k} {v}" for k, v in vd.most_common()) or "none"))
    negs = [r["entry"] for r in loaded if r.get("neg") not in ("", 0, None)]
    warned = [f"{r['entry']} {r['warnings']}" for r in loaded if r.get("warnings")]
    print(f"warnings while loading: {len(warned)}" + "".join(f"\n  {_cut(w, 180)}" for w in warned))
    print(f"negative SSA counts: {len(negs)}" + (f" ({', '.join(negs)})" if negs else ""))
    x0bad = [f"{r['entry']} {r['x0']}" for r in loaded if r.get("x0") and not r["x0"].startswith("ok")]
    print(f"initial state vs libroadrunner: {len(x0bad)} not ok" + ("".join(f"\n  {s}" for s in x0bad)))
    rrbad = [f"{r['entry']} {r['rr']}" for r in loaded if r.get("rr") and r["rr"] != "ok"]
    print(f"libroadrunner not ok: {len(rrbad)}" + ("".join(f"\n  {s}" for s in rrbad)))

    notrun = [r for r in rows if r.get("status") not in ("amounts", "volume")]
    rr_ok = [r["entry"] for r in notrun if r.get("rr") == "orig ok"]
    print(f"not run by sbml_met but libroadrunner's gillespie runs the original file: {len(rr_ok)} of "
          f"{len(notrun)}" + (f" ({', '.join(rr_ok)})" if rr_ok else ""))

    odes = [r for r in loaded if r.get("ode")]
    ode_bad = [f"{r['entry']} {r['ode']}" for r in odes if not r["ode"].startswith(("ode ok", "ode: counts"))]
    print(f"converted entries vs libroadrunner's ODE x conversion factor: {len(odes)} checked, "
          f"{len(ode_bad)} not ok" + "".join(f"\n  {s}" for s in ode_bad))

    simulated = [r for r in loaded if _simulated(r)]
    print(f"coverage: sbml_met simulates {len(simulated)} of {len(rows)} entries "
          f"(loaded {len(loaded)}; of those {sum(1 for r in simulated if r.get('verdict', '').startswith('agree'))} "
          "agree with libroadrunner's gillespie)")
    if args.copasi:
        cop_ok = [r for r in rows if str(r.get("copasi", "")).startswith("ok")]
        both = [r for r in cop_ok if _simulated(r)]
        print(f"coverage: COPASI simulates {len(cop_ok)} of {len(rows)} entries; both {len(both)}; "
              f"sbml_met only {len(simulated) - len(both)}; COPASI only {len(cop_ok) - len(both)}")
        cop = Counter(str(r.get("copasi", "")).split(":")[0] for r in rows)
        cop_notrun = [f"{r['entry']} ({r['copasi']})" for r in notrun if str(r.get("copasi", "")).startswith("ok")]
        print("COPASI: " + ", ".join(f"{k} {v}" for k, v in cop.most_common()) + f" (of {len(rows)}); "
              f"runs but sbml_met does not: {len(cop_notrun)}" + (f" ({', '.join(cop_notrun)})" if cop_notrun else ""))

    ent, elem, example = Counter(), Counter(), {}
    for r in rows:
        if r.get("status") != "refused":
            continue
        seen = set()
        for cat, eid, feat in r["categories"]:
            elem[cat] += 1
            if cat not in seen:
                ent[cat] += 1
                seen.add(cat)
                example.setdefault(cat, f"{r['entry']} {eid}: {feat}")
    if ent:
        print("refusal reasons (entries, elements; example):")
        for cat, k in ent.most_common():
            print(f"  {k:>3} entries {elem[cat]:>4} elements  {cat:<46} e.g. {_cut(example[cat], 150)}")
    crashes = [r for r in rows if r.get("status") == "crashed"]
    print(f"crashes: {len(crashes)}")
    for r in crashes:
        c = r.get("crash") or {}
        print(f"  {r['entry']}: {c.get('type')}: {c.get('message')}\n    last frame: {c.get('frame')}")
        for line in (c.get("traceback") or "").rstrip().splitlines()[-8:]:
            print("    | " + line)

    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{r[k]:.2f}" if k == "seconds" else r.get(k, "")) for k in COLUMNS})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
